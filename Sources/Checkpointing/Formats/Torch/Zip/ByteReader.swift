/// Bounds-checked little-endian reads from bytes that may be hostile.
///
/// Every read checks the bytes that remain first, so a length or count read from a file can
/// never reach past its end; a failure names what was being read and the file offset.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var position: Int
    /// The file offset of `bytes[0]`, so errors name a place in the file.
    let fileOffset: Int
    /// What the bytes are, for messages ("the zip central directory").
    let what: String

    init(_ bytes: UnsafeRawBufferPointer, fileOffset: Int = 0, what: String) {
        self.bytes = bytes
        self.position = 0
        self.fileOffset = fileOffset
        self.what = what
    }

    var remaining: Int { bytes.count - position }
    var isAtEnd: Bool { position >= bytes.count }
    /// The file offset of the next byte.
    var offset: Int { fileOffset + position }

    func truncated(_ needed: Int) -> CheckpointError {
        CheckpointError(
            .malformed, "\(what) is truncated: \(needed) more bytes were needed but only \(remaining) remain",
            offset: offset)
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(CheckpointError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw truncated(size) }
        let value = T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
        position += size
        return value
    }

    mutating func readByte() throws(CheckpointError) -> UInt8 { try read(UInt8.self) }

    /// The next `count` bytes, where they are (no copy).
    mutating func read(count: Int) throws(CheckpointError) -> UnsafeRawBufferPointer {
        guard count >= 0, remaining >= count else { throw truncated(count) }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
        position += count
        return slice
    }

    mutating func skip(_ count: Int) throws(CheckpointError) {
        guard count >= 0, remaining >= count else { throw truncated(count) }
        position += count
    }
}

extension UnsafeRawBufferPointer {
    /// The little-endian integer at `offset`; the caller has checked the bounds.
    func littleEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order.
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
