import ArgumentParser
import Checkpointing

/// The bounds on reading a checkpoint (``ReadingLimits``), for the commands that read one:
/// raise one for a genuine checkpoint past it (one of almost nothing but zeros expands beyond
/// the default 1000-fold), lower them to read untrusted files more strictly.
struct ReadingLimitsFlags: ParsableArguments {
    @Option(help: "The deepest a checkpoint's tree may nest, for reading and for what convert writes (default 150, at most \(ReadingLimits.deepestSupportedDepth)).")
    var maxDepth: Int?

    @Option(help: "The most a compressed checkpoint may expand, as a ratio (default 1000).")
    var maxExpansion: Int?

    @Option(help: "The most bytes a compressed checkpoint may decompress to (default 1 TiB).")
    var maxDecompressedBytes: Int?

    @Option(help: "The largest safetensors header, in bytes (default 100 MB).")
    var maxHeaderBytes: Int?

    @Option(help: "The most entries a .pt file's zip directory may list (default 4194304).")
    var maxZipEntries: Int?

    @Option(help: "The most memo entries a .pt file's pickle may store (default 4194304).")
    var maxPickleMemo: Int?

    func validate() throws {
        if let maxDepth, !(1...ReadingLimits.deepestSupportedDepth).contains(maxDepth) {
            throw ValidationError("--max-depth must be between 1 and \(ReadingLimits.deepestSupportedDepth)")
        }
        for (flag, value) in [
            ("--max-expansion", maxExpansion), ("--max-decompressed-bytes", maxDecompressedBytes),
            ("--max-header-bytes", maxHeaderBytes), ("--max-zip-entries", maxZipEntries), ("--max-pickle-memo", maxPickleMemo),
        ] {
            if let value, value < 1 { throw ValidationError("\(flag) must be at least 1") }
        }
    }

    var readingLimits: ReadingLimits {
        var limits = ReadingLimits()
        if let maxDepth { limits.maximumDepth = maxDepth }
        if let maxExpansion { limits.maximumExpansionRatio = maxExpansion }
        if let maxDecompressedBytes { limits.maximumDecompressedBytes = maxDecompressedBytes }
        if let maxHeaderBytes { limits.maximumHeaderBytes = maxHeaderBytes }
        if let maxZipEntries { limits.maximumDirectoryEntries = maxZipEntries }
        if let maxPickleMemo { limits.maximumMemoEntries = maxPickleMemo }
        return limits
    }
}
