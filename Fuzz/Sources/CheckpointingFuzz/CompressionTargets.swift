@testable import Checkpointing

/// Every decompressor, under ``ReadingLimits`` small enough that a bomb hits them in a
/// few milliseconds.
///
/// libzstd is the one codec whose verdict can depend on how the input is cut: a frame that
/// arrives whole is decoded in one pass, and its one-pass and streaming decoders disagree on a
/// few damaged-but-decodable frames, each accepting some that the other refuses. The fuzzer
/// found three: a frame whose header declares 8 bytes but whose only block is empty, and one
/// whose only block is a zero-length run (refused whole, and by `zstd -d`, which decodes small
/// files in one pass; accepted in pieces, giving the bytes their blocks and checksum describe);
/// and a frame that declares no content and whose only block is a zero-length run (accepted
/// whole and by `zstd -d`, refused as corrupt in pieces), found first alone and then after
/// frames with content (the campaigns of 2026-12-01). No compressor writes such frames. So for
/// zstd the harness allows one way to refuse as malformed what the other accepts: a refusal
/// loses nothing and loads nothing wrong. What it never allows is two acceptances that differ,
/// or any other difference.
enum CompressionTargets {
    static let limits = ReadingLimits(maximumDecompressedBytes: 1 << 20, maximumExpansionRatio: 1000, expansionRatioFloor: 64 << 10)

    static let all: [FuzzTarget] = CompressionCodec.allCases.map(target)

    /// What each decoder may allocate at most, in MiB: liblzma's memory limit (1 GiB) for xz
    /// and lzma, zstd's largest window without `--long` (128 MiB), lzop's largest block and
    /// float-split's largest chunk (64 MiB), and the others' fixed state; each plus the 1 MiB
    /// output buffer.
    static func mallocLimitMB(_ codec: CompressionCodec) -> Int {
        switch codec {
        case .xz, .lzma: 1040
        case .zstd: 136
        case .lzop, .floatSplit: 72
        case .gzip, .bzip2, .lz4: 16
        }
    }

    private static func target(_ codec: CompressionCodec) -> FuzzTarget {
        FuzzTarget(
            name: codec.rawValue,
            summary: "the \(codec.rawValue) decompressor through LimitedSink; the stream whole and in pieces must decode the same",
            mallocLimitMB: mallocLimitMB(codec),
            fixtures: ["composer/*"],
            // Fixtures of this codec only, recognised as the loader recognises them.
            fromFixture: { bytes in
                let kind = bytes.withUnsafeBytes { FileKind.sniff(UnsafeRawBufferPointer(rebasing: $0.prefix(512)), fileSize: $0.count) }
                return kind == codec.fileKind ? bytes : nil
            },
            seeds: { seeds(codec) },
            run: { bytes in
                let whole = decompress(codec) { (limited, decompressor) throws(CheckpointError) in
                    try bytes.forEachChunk(ofAtMost: Decompression.pieceSize) { (piece) throws(CheckpointError) in
                        limited.inputBytes += piece.count
                        try decompressor.write(piece)
                    }
                }
                let pieces = decompress(codec) { (limited, decompressor) throws(CheckpointError) in
                    try feedInPieces(bytes) { (piece) throws(CheckpointError) in
                        limited.inputBytes += piece.count
                        try decompressor.write(piece)
                    }
                }
                // The ratio limit is checked against the input seen so far, which differs
                // between the two; any other outcome must not, but for one known difference.
                guard !whole.isLimit, !pieces.isLimit else { return }
                if codec == .zstd, case .accepted = pieces, whole == .refused(.malformed) { return }
                if codec == .zstd, case .accepted = whole, pieces == .refused(.malformed) { return }
                FuzzCheck.expect(pieces == whole, "the \(codec.rawValue) stream in pieces is \(pieces), whole \(whole)")
            }
        )
    }

    /// Decompresses what `feed` writes, as `Decompression.decompress` does, into a digest.
    private static func decompress(
        _ codec: CompressionCodec, _ feed: (LimitedSink, any StreamTransform) throws(CheckpointError) -> Void
    ) -> Outcome {
        let output = DigestSink()
        let limited = LimitedSink(next: output, codec: codec, limits: limits)
        do {
            let decompressor = try codec.decompressor(into: limited)
            try feed(limited, decompressor)
            try decompressor.finish()
        } catch {
            return .refused(error.code)
        }
        return .accepted(output.digest)
    }

    /// Streams from this library's compressor: empty, text, a native file, and zeros (which
    /// compress far), at the default level and a stronger one whose window stays small (the
    /// decoder allocates the window a stream asks for, on every input made from it).
    private static func seeds(_ codec: CompressionCodec) -> [(name: String, bytes: [UInt8])] {
        let inputs: [(String, [UInt8])] = [
            ("empty", []), ("text", Array("a checkpoint, a checkpoint, a checkpoint".utf8)),
            ("native", Seeds.native(Seeds.smallTree)), ("zeros", [UInt8](repeating: 0, count: 64 << 10)),
        ]
        var seeds: [(name: String, bytes: [UInt8])] = []
        let stronger = switch codec {
        case .gzip: 9
        case .bzip2: 1
        case .xz, .lzma: 3
        case .zstd: 9
        case .lz4: 12
        case .lzop: 6
        case .floatSplit: 9
        }
        for level in [codec.defaultLevel, stronger] {
            for (name, input) in inputs {
                let sink = MemorySink()
                FuzzCheck.succeeds("compressing a \(codec.rawValue) seed") { () throws(CheckpointError) in
                    let compressor = try codec.compressor(into: sink, options: CompressionOptions(level: level, threads: 1))
                    try compressor.write(input)
                    try compressor.finish()
                }
                seeds.append(("\(name)-\(level).\(codec.fileExtension)", sink.bytes))
            }
        }
        return seeds
    }
}
