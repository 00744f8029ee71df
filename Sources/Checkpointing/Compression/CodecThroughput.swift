/// Compressing bytes in memory with nothing written anywhere: the codec's own cost, without
/// the file system's, for `ckpt bench fsz`.
extension CompressionCodec {
    /// Compresses `bytes`, handed over in `piece`-byte writes as a save hands over a file,
    /// with `options`, and returns the compressed size; the compressed bytes are discarded.
    package func compressedSize(
        of bytes: UnsafeRawBufferPointer, options: CompressionOptions = CompressionOptions(), piece: Int = 4 << 20
    ) throws(CheckpointError) -> Int {
        let sink = DiscardingSink()
        let compressor = try compressor(into: sink, options: options)
        try bytes.forEachChunk(ofAtMost: piece) { (part) throws(CheckpointError) in try compressor.write(part) }
        try compressor.finish()
        return sink.position
    }
}

/// A sink that counts what it is given and keeps none of it.
private final class DiscardingSink: ByteSink {
    private(set) var position = 0

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        position += bytes.count
    }
}
