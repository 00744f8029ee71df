/// A destination for the bytes of a checkpoint file, written in order.
///
/// Formats write to a sink rather than to a file, so the same writer serves a local file, a
/// compressor or an upload.
protocol ByteSink: AnyObject {
    /// Bytes written so far.
    var position: Int { get }
    /// Appends `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError)
}

/// A sink that can also overwrite bytes it has already written (a local file).
///
/// The native writer uses it to checksum tensors in the same pass as writing them and fill in
/// the header, which holds the checksums, at the end.
protocol SeekableByteSink: ByteSink {
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError)
}

extension ByteSink {
    /// Appends the bytes of an array.
    func write(_ bytes: [UInt8]) throws(CheckpointError) {
        try rethrowingCheckpointError { try bytes.withUnsafeBytes { try write($0) } }
    }
}

/// Runs `body`, whose only errors are ``CheckpointError``s passed through an untyped
/// `rethrows` function of the standard library, and restores the typed error.
func rethrowingCheckpointError<T>(_ body: () throws -> T) throws(CheckpointError) -> T {
    do {
        return try body()
    } catch let error as CheckpointError {
        throw error
    } catch {
        throw CheckpointError(.io, "\(error)", underlying: error)
    }
}

extension UnsafeRawBufferPointer {
    /// Calls `body` with consecutive pieces of these bytes of at most `size` bytes each, in
    /// order (not at all when there are none): how a large buffer is handed to a C library
    /// that takes 32-bit lengths, or written in cache-sized pieces.
    func forEachChunk<E: Error>(ofAtMost size: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        var offset = 0
        while offset < count {
            let end = Swift.min(count, offset + size)
            try body(UnsafeRawBufferPointer(rebasing: self[offset..<end]))
            offset = end
        }
    }
}
