import ArgumentParser
import CheckpointBench
import Checkpointing

/// `ckpt bench compression CODEC|all`: our compressed save beside Composer's pipe and the tool.
struct CompressionBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compression",
        abstract: "Set our compressed save beside Composer's pipe into the codec's tool and the tool on every core.",
        discussion: """
            CODEC is gz, bz2, xz, lzma, zst, lz4 or lzo (or gzip, bzip2, zstd, lzop): our durable \
            .pt.CODEC save beside the uncompressed bytes piped into the codec's tool at its \
            defaults (Composer's method) and the tool on all cores where it has threads. `all`: our \
            save and open with every codec. The float-split codec has its own: `ckpt bench fsz`.
            """)

    @Argument(help: "The codec, or `all`.")
    var codec: String

    @OptionGroup var bench: BenchOptions

    @OptionGroup var compression: CompressionSettings

    func validate() throws {
        guard codec == "all" || Self.codec(codec) != nil else {
            throw ValidationError("CODEC is gz, bz2, xz, lzma, zst, lz4, lzo (or gzip, bzip2, zstd, lzop) or all; the float-split codec has its own: ckpt bench fsz")
        }
    }

    /// The named codec, except the float-split one (`ckpt bench fsz` measures it).
    static func codec(_ name: String) -> CompressionCodec? {
        guard let codec = CompressionCodec(fileExtension: name) ?? CompressionCodec(rawValue: name), codec != .floatSplit else {
            return nil
        }
        return codec
    }

    func run() throws {
        let codecs = codec == "all" ? CompressionCodec.allCases : Self.codec(codec).map { [$0] } ?? []
        try bench.withFolder { folder in
            try bench.report(
                try CompressionBench(
                    state: try bench.state(), folder: folder, codecs: codecs, options: compression.options,
                    compareWithTools: codec != "all", repetitions: bench.repetitions
                ).run())
        }
    }
}

/// `ckpt bench fsz [--file MODEL]`: the float-split codec beside zstd.
struct FloatSplitBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsz",
        abstract: "Set the float-split codec's save, open and verified load beside .safetensors.zst, .pt.zst and zstd -1 -T0.")

    @OptionGroup var bench: BenchOptions

    @Option(help: "Measure on this checkpoint (a trained model's safetensors file) instead of the bench state.")
    var file: String?

    @Flag(help: "Measure the .fsz file alone: its save, open, decodes and verified load.")
    var fszOnly = false

    @OptionGroup var compression: CompressionSettings

    func run() throws {
        let tree = try file.map { try CheckpointFile.open($0).tree } ?? bench.state().tree
        try bench.withFolder { folder in
            try bench.report(
                try FloatSplitBench(
                    tree: tree, source: file ?? "bench state (scale \(bench.scale))", folder: folder,
                    options: compression.options, repetitions: bench.repetitions, fszOnly: fszOnly
                ).run())
        }
    }
}
