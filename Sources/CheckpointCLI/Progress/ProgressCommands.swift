// The commands whose work is long enough for a progress bar.

extension VerifyCommand: ReportsProgress { var quiet: Bool { progress.quiet } }
extension ConvertCommand: ReportsProgress { var quiet: Bool { progress.quiet } }
extension InspectCommand: ReportsProgress { var quiet: Bool { progress.quiet } }

/// A benchmark: its progress follows `--quiet` among the options every benchmark takes.
protocol BenchmarkCommand: ReportsProgress {
    var bench: BenchOptions { get }
}

extension BenchmarkCommand {
    var quiet: Bool { bench.progress.quiet }
}

extension SaveBenchCommand: BenchmarkCommand {}
extension TorchBenchCommand: BenchmarkCommand {}
extension HuggingFaceBenchCommand: BenchmarkCommand {}
extension DCPBenchCommand: BenchmarkCommand {}
extension CompressionBenchCommand: BenchmarkCommand {}
extension FloatSplitBenchCommand: BenchmarkCommand {}
extension SaverBenchCommand: BenchmarkCommand {}
extension S3BenchCommand: BenchmarkCommand {}
extension ShardedBenchCommand: BenchmarkCommand {}
