import ArgumentParser
import CheckpointBench
import Checkpointing
import Foundation

/// `ckpt bench SUBCOMMAND`: measurements on a GPT-2-small-shaped state, each set beside the
/// limit it should be judged against, in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure saves, loads, compression and transfers on a GPT-2-small-shaped state.",
        discussion: """
            Every measurement is set beside its limit in the same run (a raw write + fsync of the \
            same bytes, the codec's own tool, raw PUTs and GETs), each timing the median of \
            --repeat runs. Build with -c release to measure.
            """,
        subcommands: [
            SaveBenchCommand.self, TorchBenchCommand.self, HuggingFaceBenchCommand.self, DCPBenchCommand.self,
            CompressionBenchCommand.self, FloatSplitBenchCommand.self, SaverBenchCommand.self, S3BenchCommand.self,
            ShardedBenchCommand.self,
        ],
        defaultSubcommand: SaveBenchCommand.self)
}

/// The options every benchmark takes.
struct BenchOptions: ParsableArguments {
    @Option(help: "Multiply every tensor's first dimension (1 = 584 tensors, 1.49 GB).")
    var scale: Double = 1

    @Option(name: .customLong("repeat"), help: "Repetitions; the median of each timing is reported.")
    var repetitions: Int = 3

    @Option(help: "Folder for the files (removed afterwards). Defaults to a temporary folder.")
    var folder: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        guard scale > 0 else { throw ValidationError("--scale must be positive") }
        guard repetitions >= 1 else { throw ValidationError("--repeat must be at least 1") }
    }

    /// The bench state at `--scale`.
    func state() throws -> TrainingState { try SyntheticState.gpt2Small(scale: scale) }

    /// Runs `body` with a fresh folder for the benchmark's files (`--folder`, or a temporary
    /// folder named after `name`), removed afterwards.
    func withFolder<Result>(named name: String = UUID().uuidString, _ body: (String) throws -> Result) throws -> Result {
        // Unique per run: benchmarks may run at once in one process (the tests run them in-process).
        let directory = folder ?? FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-bench-\(name)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try body(directory)
    }

    /// Prints a benchmark's result as a table, or as one JSON object with `--json`.
    func report(_ result: some BenchReport) throws {
        print(try result.rendered(asJSON: json))
    }
}

/// `--level` and `--threads`: the compression settings of the compression benchmarks.
struct CompressionSettings: ParsableArguments {
    @Option(help: "The compression level (default: the codec's fast default).")
    var level: Int?

    @Option(help: "Compression threads for zstd, xz and fsz (default: every core).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    var options: CompressionOptions { CompressionOptions(level: level, threads: threads) }
}
