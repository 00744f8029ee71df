/// The shards of a Hugging Face sharded checkpoint that ``CheckpointFile/open(_:)-7qhys`` opened:
/// ``CheckpointFile/huggingFaceShards``.
///
/// Opening already checked everything listed here against the shards' headers: every tensor of
/// the `weight_map` is in the shard it names, and no shard holds a tensor that the map does not
/// list or that another shard holds too.
public struct HuggingFaceShards: Sendable, Equatable {
    /// One shard: an ordinary safetensors file.
    public struct Shard: Sendable, Equatable {
        /// The file's path relative to the index's folder, as the `weight_map` gives it.
        public var name: String
        /// The file's size in bytes.
        public var byteCount: Int
        /// How many tensors it holds.
        public var tensorCount: Int
        /// The XXH3-64 of its 8-byte header length and header, in 16 hex digits.
        public var headerDigest: String
        /// Whether its `__metadata__` records an XXH3-64 checksum for each of its tensors (the
        /// shards this library writes do; Hugging Face's own writers record none).
        public var hasChecksums: Bool
    }

    /// The index the checkpoint was opened from.
    public var indexPath: String
    /// The shards, in the order of their names (`model-00001-of-…` first).
    public var shards: [Shard]
    /// For each tensor, by its flattened path in ``CheckpointFile/tree`` (its name, with any `/`
    /// or `\` escaped: see ``StatePath``), the position in ``shards`` of the shard that holds it.
    public var shardOfTensor: [String: Int]
    /// The `metadata.total_size` the index states, when it states a whole number of bytes.
    /// Informational: Hugging Face's loaders ignore it, and older writers counted tied weights
    /// that the shards do not hold.
    public var statedTotalSize: Int?
    /// Whether the index carries this library's commit record (each shard's size and header
    /// digest), which opening checked: every shard is the very file the save wrote.
    public var isCommitRecorded: Bool

    /// Whether every shard records a checksum for each of its tensors, so that
    /// ``CheckpointFile/verify(progress:)-8jpej`` checks every byte of every tensor.
    public var hasChecksums: Bool { shards.allSatisfy(\.hasChecksums) }

    /// The path of a shard (its ``Shard/name`` joined to the index's folder).
    public func path(of shard: Shard) -> String {
        FilePaths.join(FilePaths.split(indexPath).folder, shard.name)
    }

    /// The path of the shard that holds the tensor at the flattened path `tensorPath` (its name,
    /// escaped), if any does.
    public func shardPath(ofTensor tensorPath: String) -> String? {
        shardOfTensor[tensorPath].map { path(of: shards[$0]) }
    }
}

extension CheckpointFile {
    /// The tree as a training state reads it: a Hugging Face checkpoint's tensors are a
    /// model's, so they go under `state/model`; any other file's tree as it is.
    var trainingTree: StateValue {
        huggingFaceShards == nil ? tree : .dict(["state": .dict(["model": tree])])
    }
}
