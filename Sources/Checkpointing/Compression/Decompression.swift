/// Decompressing a whole file for loading: the compressed bytes stream from their mapping
/// through the codec into an anonymous temporary file, which is then mapped, so neither side
/// is ever held in the heap; ``ReadingLimits`` bound what is written.
enum Decompression {
    /// Input is handed to the codec in pieces of this size, so the limits are checked often.
    static let pieceSize = 1 << 20

    /// Decompresses `input` with `codec` and maps the result, named `path` in messages.
    static func decompress(
        _ input: UnsafeRawBufferPointer, codec: CompressionCodec, limits: ReadingLimits, path: String
    ) throws(CheckpointError) -> MappedFile {
        do throws(CheckpointError) {
            let file = try AnonymousFile()
            let limited = LimitedSink(next: file, codec: codec, limits: limits)
            let decompressor = try codec.decompressor(into: limited)
            let progress = CheckpointProgress.current
            progress?.begin("decompressing", totalBytes: input.count)
            defer { progress?.finish() }
            let cancellation = CancellationFlag.current
            try input.forEachChunk(ofAtMost: pieceSize) { (piece) throws(CheckpointError) in
                try cancellation?.check("decompressing", path: path)
                limited.inputBytes += piece.count
                try decompressor.write(piece)
                progress?.advance(by: piece.count)
            }
            try decompressor.finish()
            return try file.map(path: path)
        } catch {
            throw error.at(path: path)
        }
    }
}

/// Passes bytes on until they exceed the limits, then throws: what stops a decompression bomb.
final class LimitedSink: ByteSink {
    private let next: any ByteSink
    private let codec: CompressionCodec
    private let limits: ReadingLimits
    /// Compressed bytes handed to the decompressor so far (including the piece in progress).
    var inputBytes = 0
    private(set) var position = 0

    init(next: any ByteSink, codec: CompressionCodec, limits: ReadingLimits) {
        self.next = next
        self.codec = codec
        self.limits = limits
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        let total = position + bytes.count
        if total > limits.maximumDecompressedBytes {
            throw CheckpointError(
                .limitExceeded,
                "the \(codec.rawValue) stream decompresses to more than \(limits.maximumDecompressedBytes) bytes, the limit (ReadingLimits.maximumDecompressedBytes; ckpt: --max-decompressed-bytes); raise it if the checkpoint really is that large")
        }
        if total > limits.expansionRatioFloor, total / max(inputBytes, 1) > limits.maximumExpansionRatio {
            throw CheckpointError(
                .limitExceeded,
                "the \(codec.rawValue) stream expands more than \(limits.maximumExpansionRatio)-fold (\(inputBytes) bytes already gave \(total)): a decompression bomb, or a checkpoint of almost nothing but zeros; raise ReadingLimits.maximumExpansionRatio (ckpt: --max-expansion) to load it anyway",
                offset: inputBytes)
        }
        try next.write(bytes)
        position = total
    }
}
