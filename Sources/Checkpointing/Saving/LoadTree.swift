/// A checkpoint's tree as ``loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:progress:)-29crs`` read it.
public struct LoadedTree: Sendable {
    /// The file read, the manifest of a sharded checkpoint, or a DCP folder.
    public var path: String
    /// The tree, with this rank's part of every tensor.
    public var tree: StateValue
    /// What the tensors in ``tree`` are parts of: pass it to a sharded save to write them again.
    public var sharding: Sharding
}

/// Reads any checkpoint, a single file or a sharded one, as a tree, keeping every part of it
/// (Composer layout or not), and cuts its tensors to this rank's part under `shardPlan`.
///
/// This is what `ckpt convert` uses: with the plan ``ShardPlan/splitFirstDimension`` and a
/// sharded save, N ranks turn any checkpoint into an N-way sharded one, or reshard a sharded
/// one from any number of ranks to N.
///
/// - Parameters:
///   - path: A checkpoint file, a sharded checkpoint's manifest or the folder that holds it, or
///     a PyTorch Distributed Checkpoint folder (or its `.metadata`).
///   - verifyChecksums: Check every tensor read (and every record of a torch file).
///   - limits: Bounds on reading the checkpoint (``ReadingLimits``: nesting depth,
///     decompression, header sizes).
///   - shardPlan: Which part of each tensor this rank gets (default: rows split evenly).
///   - processGroup: The processes of the run.
///   - progress: Reports the bytes downloaded, decompressed and verified (phases `downloading`,
///     `decompressing`, `verifying`), or for a sharded or DCP checkpoint the bytes of the
///     pieces this rank reads (one phase, `loading`).
public func loadCheckpointTree(
    _ path: String,
    verifyChecksums: Bool = true,
    limits: ReadingLimits = ReadingLimits(),
    shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) throws(CheckpointError) -> LoadedTree {
    if let progress, progress !== CheckpointProgress.current {
        return try CheckpointProgress.reporting(to: progress) { () throws(CheckpointError) in
            try loadCheckpointTree(
                path, verifyChecksums: verifyChecksums, limits: limits, shardPlan: shardPlan, processGroup: processGroup,
                progress: progress)
        }
    }
    if let folder = try DistributedCheckpoint.locate(path) {
        let (tree, sharding) = try DCPLoad.read(folder: folder, plan: shardPlan, verifyChecksums: verifyChecksums, processGroup: processGroup)
        try limits.checkDepth(of: tree, path: folder)
        return LoadedTree(path: folder, tree: tree, sharding: sharding)
    }
    if let manifestPath = try ShardManifest.locate(path) {
        let (tree, sharding) = try ShardedLoad.read(
            manifestAt: manifestPath, plan: shardPlan, verifyChecksums: verifyChecksums, limits: limits,
            processGroup: processGroup)
        try limits.checkDepth(of: tree, path: manifestPath)
        return LoadedTree(path: manifestPath, tree: tree, sharding: sharding)
    }
    let file = try CheckpointFile.open(path, limits: limits)
    let (rank, worldSize) = (processGroup.rank, processGroup.worldSize)
    // Only the tensors this rank takes a part of: N ranks splitting one file read it once in all.
    let takes: (String) -> Bool = { path in
        guard let tensor = file.tree[path: path]?.tensorValue else { return false }
        return shardPlan.slice(path, tensor.shape, rank, worldSize) != nil
    }
    try file.decode(tensorsWhere: takes)
    let (tree, sharding) = try shardPlan.apply(to: file.tree, rank: rank, worldSize: worldSize)
    if verifyChecksums { try file.verify(tensorsWhere: takes) }
    return LoadedTree(path: path, tree: tree, sharding: sharding)
}
