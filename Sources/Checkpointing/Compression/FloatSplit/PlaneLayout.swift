/// How the elements of one float dtype are cut into byte planes, plane 0 holding the exponent
/// (the FloatSplitFormat article gives the bits of each plane).
///
/// bf16 and fp32 move the exponent into a byte of its own (`(x >> 7) & 0xFF`,
/// `(x >> 23) & 0xFF`) and keep sign and mantissa in the other planes: measured on a trained
/// model, that costs 0.07 bits an element less than plain byte planes, whose top byte mixes
/// the sign with 7 exponent bits. fp16 and fp64, whose exponents do not fill a byte, and the
/// one-byte float8 types are cut into byte planes, most significant first; the per-plane
/// coding then finds which planes compress.
enum PlaneLayout: Equatable {
    /// `[exponent, sign | mantissa 6..0]`.
    case bfloat16
    /// `[exponent, sign | mantissa 22..16, mantissa 15..8, mantissa 7..0]`; complex64 is pairs of these.
    case float32
    /// Byte planes of elements `width` bytes wide, most significant byte first.
    case bytes(width: Int)

    /// The layout of a dtype's elements, `nil` for the dtypes that are not floats.
    init?(_ dtype: DType) {
        switch dtype {
        case .bfloat16: self = .bfloat16
        case .float32, .complex64: self = .float32
        case .float16: self = .bytes(width: 2)
        case .float64: self = .bytes(width: 8)
        case .float8_e4m3fn, .float8_e5m2: self = .bytes(width: 1)
        case .bool, .uint8, .int8, .int16, .int32, .int64, .uint16, .uint32, .uint64: return nil
        }
    }

    /// Bytes per element, which is also the number of planes.
    var width: Int {
        switch self {
        case .bfloat16: 2
        case .float32: 4
        case .bytes(let width): width
        }
    }

    /// Cuts `count` elements at `input` into `width` planes of `count` bytes, one after the
    /// other at `planes`.
    func split(_ input: UnsafeRawPointer, count: Int, into planes: UnsafeMutablePointer<UInt8>) {
        switch self {
        case .bfloat16:
            let exponent = planes, rest = planes + count
            for index in 0..<count {
                let x = UInt16(littleEndian: (input + 2 * index).loadUnaligned(as: UInt16.self))
                exponent[index] = UInt8(truncatingIfNeeded: x >> 7)
                rest[index] = UInt8(truncatingIfNeeded: (x & 0x7F) | (x >> 8) & 0x80)
            }
        case .float32:
            let exponent = planes, top = planes + count, middle = planes + 2 * count, low = planes + 3 * count
            for index in 0..<count {
                let x = UInt32(littleEndian: (input + 4 * index).loadUnaligned(as: UInt32.self))
                exponent[index] = UInt8(truncatingIfNeeded: x >> 23)
                top[index] = UInt8(truncatingIfNeeded: (x >> 16) & 0x7F | (x >> 24) & 0x80)
                middle[index] = UInt8(truncatingIfNeeded: x >> 8)
                low[index] = UInt8(truncatingIfNeeded: x)
            }
        case .bytes(let width):
            let bytes = input.assumingMemoryBound(to: UInt8.self)
            for plane in 0..<width {
                let destination = planes + plane * count
                let byte = width - 1 - plane
                for index in 0..<count { destination[index] = bytes[index * width + byte] }
            }
        }
    }

    /// Joins `width` planes of `count` bytes back into elements at `output`.
    func merge(_ planes: [UnsafePointer<UInt8>], count: Int, into output: UnsafeMutableRawPointer) {
        switch self {
        case .bfloat16:
            let exponent = planes[0], rest = planes[1]
            for index in 0..<count {
                let r = UInt16(rest[index])
                let x = UInt16(exponent[index]) << 7 | (r & 0x80) << 8 | (r & 0x7F)
                (output + 2 * index).storeBytes(of: x.littleEndian, as: UInt16.self)
            }
        case .float32:
            let exponent = planes[0], top = planes[1], middle = planes[2], low = planes[3]
            for index in 0..<count {
                let t = UInt32(top[index])
                let x = UInt32(exponent[index]) << 23 | (t & 0x80) << 24 | (t & 0x7F) << 16
                    | UInt32(middle[index]) << 8 | UInt32(low[index])
                (output + 4 * index).storeBytes(of: x.littleEndian, as: UInt32.self)
            }
        case .bytes(let width):
            let bytes = output.assumingMemoryBound(to: UInt8.self)
            for plane in 0..<width {
                let source = planes[plane]
                let byte = width - 1 - plane
                for index in 0..<count { bytes[index * width + byte] = source[index] }
            }
        }
    }
}
