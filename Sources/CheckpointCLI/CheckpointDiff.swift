import Checkpointing
import Foundation

/// The differences between two checkpoint trees, node by node (`ckpt diff`).
///
/// Missing parts are reported at the highest path that is missing, not for everything below
/// it; tensors are compared element by element (bit patterns, as the library's equality does),
/// with the largest numeric difference for numeric dtypes.
struct CheckpointDiff {
    enum Kind: String {
        case onlyInFirst = "only in A"
        case onlyInSecond = "only in B"
        case changed
    }

    struct Difference {
        var path: String
        var kind: Kind
        var detail: String
    }

    private(set) var differences: [Difference] = []
    private(set) var tensorsCompared = 0
    private(set) var valuesCompared = 0

    init(_ first: StateValue, _ second: StateValue) {
        compare(first, second, path: nil)
    }

    private mutating func compare(_ first: StateValue, _ second: StateValue, path: String?) {
        let name = path ?? "(root)"
        switch (first, second) {
        case (.dict(let a), .dict(let b)):
            for (key, value) in a {
                let child = StatePath.join(path, key.pathComponent)
                if let other = b[key] {
                    compare(value, other, path: child)
                } else {
                    differences.append(Difference(path: child, kind: .onlyInFirst, detail: value.kindName))
                }
            }
            for (key, value) in b where a[key] == nil {
                differences.append(Difference(path: StatePath.join(path, key.pathComponent), kind: .onlyInSecond, detail: value.kindName))
            }
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            for index in 0..<max(a.count, b.count) {
                let child = StatePath.join(path, String(index))
                if index >= b.count {
                    differences.append(Difference(path: child, kind: .onlyInFirst, detail: a[index].kindName))
                } else if index >= a.count {
                    differences.append(Difference(path: child, kind: .onlyInSecond, detail: b[index].kindName))
                } else {
                    compare(a[index], b[index], path: child)
                }
            }
        case (.tensor(let a), .tensor(let b)):
            tensorsCompared += 1
            if let detail = Self.tensorDifference(a, b) {
                differences.append(Difference(path: name, kind: .changed, detail: detail))
            }
        default:
            valuesCompared += 1
            guard first != second else { return }
            let detail =
                first.kindName == second.kindName
                ? "\(Self.brief(first)) in A, \(Self.brief(second)) in B"
                : "a \(first.kindName) in A, a \(second.kindName) in B"
            differences.append(Difference(path: name, kind: .changed, detail: detail))
        }
    }

    /// What differs between two tensors, or `nil` when they are equal.
    static func tensorDifference(_ a: Tensor, _ b: Tensor) -> String? {
        guard a.dtype == b.dtype, a.shape == b.shape else {
            return "\(a.dtype.rawValue) \(a.shape) in A, \(b.dtype.rawValue) \(b.shape) in B"
        }
        guard a != b else { return nil }
        let size = a.dtype.byteSize
        let count = a.elementCount
        var differing = 0
        var largest = 0.0
        a.withUnsafeBytes { left in
            b.withUnsafeBytes { right in
                for index in 0..<count {
                    let offset = index * size
                    guard memcmp(left.baseAddress! + offset, right.baseAddress! + offset, size) != 0 else { continue }
                    differing += 1
                    if let x = numericValue(left, offset, a.dtype), let y = numericValue(right, offset, a.dtype) {
                        let delta = abs(x - y)
                        if delta > largest || delta.isNaN { largest = delta }
                    }
                }
            }
        }
        var detail = "\(differing) of \(count) elements differ"
        if isNumeric(a.dtype) { detail += ", largest |A - B| = \(largest)" }
        return detail
    }

    /// Whether elements of `dtype` have a numeric value to subtract.
    private static func isNumeric(_ dtype: DType) -> Bool {
        ![.bool, .float8_e4m3fn, .float8_e5m2].contains(dtype)
    }

    /// The element at `offset` as a Double, for the dtypes that have one (complex: its real part).
    private static func numericValue(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ dtype: DType) -> Double? {
        func load<T: BitwiseCopyable>(_ type: T.Type) -> T { bytes.loadUnaligned(fromByteOffset: offset, as: type) }
        switch dtype {
        case .float32, .complex64: return Double(load(Float.self))
        case .float64: return load(Double.self)
        case .float16: return Double(Float(bitPattern: float16Bits(load(UInt16.self))))
        case .bfloat16: return Double(Float(bitPattern: UInt32(load(UInt16.self)) << 16))
        case .int8: return Double(load(Int8.self))
        case .uint8: return Double(load(UInt8.self))
        case .int16: return Double(load(Int16.self))
        case .uint16: return Double(load(UInt16.self))
        case .int32: return Double(load(Int32.self))
        case .uint32: return Double(load(UInt32.self))
        case .int64: return Double(load(Int64.self))
        case .uint64: return Double(load(UInt64.self))
        case .bool, .float8_e4m3fn, .float8_e5m2: return nil
        }
    }

    /// IEEE half-precision bits as single-precision bits (exact: every half is a float).
    private static func float16Bits(_ half: UInt16) -> UInt32 {
        let sign = UInt32(half & 0x8000) << 16
        var exponent = Int32((half >> 10) & 0x1F)
        var mantissa = UInt32(half & 0x3FF)
        if exponent == 0x1F { return sign | 0x7F80_0000 | (mantissa << 13) }  // inf, NaN
        if exponent == 0 {
            guard mantissa != 0 else { return sign }  // ±0
            // Subnormal: normalise.
            exponent = 1
            while mantissa & 0x400 == 0 {
                mantissa <<= 1
                exponent -= 1
            }
            mantissa &= 0x3FF
        }
        return sign | UInt32(exponent + 112) << 23 | (mantissa << 13)
    }

    /// A value in a few dozen characters.
    private static func brief(_ value: StateValue) -> String {
        let text: String
        switch value {
        case .string(let string): text = "\"\(string)\""
        case .int(let int): text = int.description
        case .float(let float): text = "\(float)"
        case .bool(let bool): text = "\(bool)"
        case .none: text = "None"
        case .bytes(let bytes): text = "\(bytes.count) bytes"
        case .duration(let duration): text = "\(duration)"
        default: text = value.kindName
        }
        return text.count > 60 ? text.prefix(57) + "..." : text
    }
}
