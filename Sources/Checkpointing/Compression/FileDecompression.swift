/// Writes the plain bytes of a compressed file to `output`, atomically and durably: the
/// compression (any codec, the float-split one included) is recognised by its magic number,
/// and one layer is removed, so a `.safetensors.fsz` gives back the exact `.safetensors` file
/// it was made from.
///
/// - Throws: ``CheckpointError``: `.invalidArgument` when `input` is not a compressed stream;
///   `.malformed` for a damaged one; `.limitExceeded` past `limits`.
public func decompressFile(
    _ input: String, to output: String, limits: ReadingLimits = ReadingLimits()
) throws(CheckpointError) {
    let source = try MappedFile(path: input)
    let prefix = UnsafeRawBufferPointer(rebasing: source.bytes.prefix(512))
    guard let kind = FileKind.sniff(prefix, fileSize: source.bytes.count), let codec = CompressionCodec(kind: kind) else {
        throw CheckpointError(.invalidArgument, "is not a compressed stream", path: input)
    }
    let file = try AtomicFileWriter(path: output)
    do {
        let limited = LimitedSink(next: file, codec: codec, limits: limits)
        let decompressor = try codec.decompressor(into: limited)
        source.adviseSequentialRead()
        try source.bytes.forEachChunk(ofAtMost: Decompression.pieceSize) { (piece) throws(CheckpointError) in
            limited.inputBytes += piece.count
            try decompressor.write(piece)
        }
        try decompressor.finish()
        try file.commit()
    } catch {
        file.abort()
        throw error.at(path: input)
    }
}
