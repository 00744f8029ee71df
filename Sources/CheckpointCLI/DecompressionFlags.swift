import ArgumentParser
import Checkpointing

/// `--max-expansion` and `--max-decompressed-bytes`: the bounds on decompressing a compressed
/// checkpoint, for the commands that read one (a checkpoint of almost nothing but zeros
/// expands beyond the default 1000-fold).
struct DecompressionFlags: ParsableArguments {
    @Option(help: "The most a compressed checkpoint may expand, as a ratio (default 1000).")
    var maxExpansion: Int?

    @Option(help: "The most bytes a compressed checkpoint may decompress to (default 1 TiB).")
    var maxDecompressedBytes: Int?

    func validate() throws {
        if let maxExpansion, maxExpansion < 1 { throw ValidationError("--max-expansion must be at least 1") }
        if let maxDecompressedBytes, maxDecompressedBytes < 1 { throw ValidationError("--max-decompressed-bytes must be at least 1") }
    }

    var limits: DecompressionLimits {
        var limits = DecompressionLimits()
        if let maxExpansion { limits.maximumRatio = maxExpansion }
        if let maxDecompressedBytes { limits.maximumBytes = maxDecompressedBytes }
        return limits
    }
}
