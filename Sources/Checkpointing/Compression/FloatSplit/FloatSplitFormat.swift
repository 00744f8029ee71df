/// The byte layout of a float-split stream (`.fsz`), which the FloatSplitFormat article
/// describes for other implementations. Every integer is little-endian.
///
/// ```
/// preamble   magic (8) | version u8 = 1 | 7 zero bytes
/// chunk*     u8 dtype code | u8 plane count P | u16 0 | u32 decoded length | u64 XXH3-64 of the decoded bytes
///            P x (u8 method | 3 zero bytes | u32 payload length) | the P payloads
/// index      one 32-byte entry per chunk: u64 decoded offset | u64 record offset | u32 decoded length
///            | u32 record length | u8 dtype code | 7 zero bytes
/// trailer    u64 index offset | u64 chunk count | u64 decoded length | u64 XXH3-64 of the index | magic (8)
/// ```
enum FloatSplitFormat {
    static let magic: [UInt8] = [0x89, 0x46, 0x53, 0x5A, 0x0D, 0x0A, 0x1A, 0x0A]  // "\x89FSZ\r\n\x1a\n"
    static let version: UInt8 = 1
    static let preambleSize = 16
    static let chunkHeaderSize = 16
    static let planeHeaderSize = 8
    static let indexEntrySize = 32
    static let trailerSize = 40
    /// The largest chunk a reader accepts; the writer cuts at ``chunkSize``.
    static let maximumChunkSize = 64 << 20
    /// The writer's chunk size: large enough that per-chunk costs (a code table, a record
    /// header, a task) vanish, small enough to decode one tensor's piece alone and keep every
    /// core busy on a model of a few MB.
    static let chunkSize = 1 << 20

    /// How a plane's payload is stored.
    enum Method: UInt8 {
        /// The plane's bytes as they are.
        case raw = 0
        /// One byte, repeated for the whole plane.
        case constant = 1
        /// ``HuffmanCode``'s payload.
        case huffman = 2
        /// One zstd frame that decodes to the plane.
        case zstd = 3
    }

    /// The dtype codes of chunk records and index entries: 0 for bytes that are not a tensor's
    /// (the safetensors header, the stream of a file that is not safetensors), else the dtype.
    static let dtypeCodes: [DType] = [
        .bool, .uint8, .int8, .int16, .int32, .int64, .uint16, .uint32, .uint64, .float16, .bfloat16, .float32,
        .float64, .float8_e4m3fn, .float8_e5m2, .complex64,
    ]

    static func code(of dtype: DType?) -> UInt8 {
        guard let dtype, let index = dtypeCodes.firstIndex(of: dtype) else { return 0 }
        return UInt8(index + 1)
    }

    /// The dtype of a code; `.some(nil)` for code 0, `nil` for a code this version does not know.
    static func dtype(ofCode code: UInt8) -> DType?? {
        if code == 0 { return .some(nil) }
        let index = Int(code) - 1
        return index < dtypeCodes.count ? .some(dtypeCodes[index]) : nil
    }

    /// The planes of a chunk of `dtype`: its float layout, or one plane of bytes.
    static func layout(of dtype: DType?) -> PlaneLayout? { dtype.flatMap(PlaneLayout.init) }

    /// One entry of the index.
    struct IndexEntry: Equatable {
        var decodedOffset: Int
        var recordOffset: Int
        var decodedLength: Int
        var recordLength: Int
        var dtypeCode: UInt8

        var decodedRange: Range<Int> { decodedOffset..<(decodedOffset + decodedLength) }
        var recordRange: Range<Int> { recordOffset..<(recordOffset + recordLength) }

        func write(to pointer: UnsafeMutableRawPointer) {
            pointer.initializeMemory(as: UInt8.self, repeating: 0, count: indexEntrySize)
            pointer.storeBytes(of: UInt64(decodedOffset).littleEndian, toByteOffset: 0, as: UInt64.self)
            pointer.storeBytes(of: UInt64(recordOffset).littleEndian, toByteOffset: 8, as: UInt64.self)
            pointer.storeBytes(of: UInt32(decodedLength).littleEndian, toByteOffset: 16, as: UInt32.self)
            pointer.storeBytes(of: UInt32(recordLength).littleEndian, toByteOffset: 20, as: UInt32.self)
            pointer.storeBytes(of: dtypeCode, toByteOffset: 24, as: UInt8.self)
        }
    }

    /// Little-endian integers at byte offsets of a buffer whose size was checked.
    static func u64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    static func u32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// A damaged stream.
    static func corrupt(_ detail: String, at offset: Int) -> CheckpointError {
        CheckpointError(
            .malformed, "the float-split (.fsz) stream is corrupt: \(detail); restore the file from another copy",
            offset: offset)
    }
}
