/// Bounds on what reading a checkpoint may cost, so that a small hostile or damaged file
/// cannot exhaust the stack, the memory or the disk: one set of limits for every format and
/// every reader (native, safetensors, torch `.pt`, tar, compressed streams, sharded, Hugging
/// Face and DCP checkpoints).
///
/// Every count and length read from a file is checked against the bytes that remain and
/// against these limits before anything is allocated. A file past a limit is refused with a
/// ``CheckpointError`` of code ``CheckpointError/Code/limitExceeded`` that names the limit and
/// the `ckpt` flag that raises it.
///
/// The defaults are far above any real checkpoint's needs. Pass other limits to
/// ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y``,
/// ``loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:progress:)-29crs``,
/// ``CheckpointFile/open(_:limits:)-5hgzb`` or ``CheckpointSaver/Options/readingLimits``; the `ckpt`
/// commands that read take them as flags (`--max-depth`, `--max-expansion`, ...).
///
/// ```swift
/// var limits = ReadingLimits()
/// limits.maximumExpansionRatio = 100_000  // a checkpoint of almost nothing but zeros
/// let state = try loadCheckpoint("sparse.safetensors.zst", limits: limits)
/// ```
///
/// ## Nesting depth
///
/// ``maximumDepth`` is one limit for every format, for writing as for reading: a tree that
/// loads can be saved in any format, and a tree that saves can be loaded back. A value's
/// depth is the number of keys on its path (`state/model/w` is 3 deep).
public struct ReadingLimits: Sendable, Hashable {
    /// The deepest a checkpoint tree may nest, in every format (default 150).
    ///
    /// At most ``deepestSupportedDepth``: the native format stores the tree as JSON, which
    /// Foundation parses to 512 levels, 3 per level of the tree.
    public var maximumDepth: Int
    /// The most memo entries a torch pickle may store (one per `BINPUT`; default 4 Mi).
    public var maximumMemoEntries: Int
    /// The largest safetensors header, in bytes (default 100 MB, safetensors' own limit).
    public var maximumHeaderBytes: Int
    /// The most entries a zip archive's central directory (a `.pt` file) may list (default 4 Mi).
    public var maximumDirectoryEntries: Int
    /// The most bytes one compressed stream may decompress to (default 1 TiB).
    public var maximumDecompressedBytes: Int
    /// The most bytes out per byte in that a compressed stream may give once its output passes
    /// ``expansionRatioFloor`` (default 1000): checkpoints of weights compress 1.1-3-fold and a
    /// sparse one perhaps 100-fold, while a bomb reaches 1000-fold and beyond.
    public var maximumExpansionRatio: Int
    /// Output below this size is never refused for its ratio (default 64 MiB: a small file of
    /// zeros is not a bomb).
    public var expansionRatioFloor: Int

    /// The deepest ``maximumDepth`` may be set: 160.
    public static let deepestSupportedDepth = 160

    public init(
        maximumDepth: Int = 150, maximumMemoEntries: Int = 1 << 22, maximumHeaderBytes: Int = 100_000_000,
        maximumDirectoryEntries: Int = 1 << 22, maximumDecompressedBytes: Int = 1 << 40, maximumExpansionRatio: Int = 1000,
        expansionRatioFloor: Int = 64 << 20
    ) {
        self.maximumDepth = maximumDepth
        self.maximumMemoEntries = maximumMemoEntries
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumDirectoryEntries = maximumDirectoryEntries
        self.maximumDecompressedBytes = maximumDecompressedBytes
        self.maximumExpansionRatio = maximumExpansionRatio
        self.expansionRatioFloor = expansionRatioFloor
    }
}

extension ReadingLimits {
    /// Refuses a tree nested deeper than ``maximumDepth``: the one depth check of every reader
    /// (on the tree a file gives) and every writer (on the tree it is given), so that what
    /// loads also saves, in any format, and the reverse. `path` names the file in the error.
    func checkDepth(of tree: StateValue, path: String? = nil) throws(CheckpointError) {
        guard (1...Self.deepestSupportedDepth).contains(maximumDepth) else {
            throw CheckpointError(
                .invalidArgument,
                "ReadingLimits.maximumDepth is \(maximumDepth); it must be between 1 and \(Self.deepestSupportedDepth), the deepest the native format's JSON tree can hold")
        }
        if let deep = Self.firstPath(in: tree, deeperThan: maximumDepth, path: nil, depth: 0) {
            throw depthExceeded(at: deep, path: path)
        }
    }

    /// The error for a value at `statePath`, deeper than ``maximumDepth``.
    func depthExceeded(at statePath: String, path: String? = nil) -> CheckpointError {
        CheckpointError(
            .limitExceeded,
            "the checkpoint tree is nested more than \(maximumDepth) levels deep (at \"\(statePath)\"); every format reads and writes trees up to ReadingLimits.maximumDepth levels (ckpt: --max-depth, at most \(Self.deepestSupportedDepth)): flatten the tree, or raise the limit",
            path: path)
    }

    /// The path of the first value deeper than `limit`; the recursion stops one level past it.
    private static func firstPath(in value: StateValue, deeperThan limit: Int, path: String?, depth: Int) -> String? {
        guard depth <= limit else { return path ?? "" }
        switch value {
        case .dict(let dict):
            for (key, child) in dict {
                if let found = firstPath(in: child, deeperThan: limit, path: StatePath.join(path, key.pathComponent), depth: depth + 1) {
                    return found
                }
            }
        case .list(let elements), .tuple(let elements):
            for (index, child) in elements.enumerated() {
                if let found = firstPath(in: child, deeperThan: limit, path: StatePath.join(path, String(index)), depth: depth + 1) {
                    return found
                }
            }
        default: break
        }
        return nil
    }
}
