// The `async` overloads of the save and load entry points. Each runs its synchronous
// counterpart, the one implementation, on ``BlockingWorkPool``'s threads, so that the file
// work never holds a thread of the cooperative pool.
//
// Cancellation: each honours its task's cancellation through the ``CancellationFlag`` the pool
// binds around the work, which the synchronous code checks at its natural boundaries.

/// Saves `state` as ``saveCheckpoint(_:filename:format:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)``
/// does, from Swift concurrency: the writing runs on a thread of the library's own, and the
/// caller's task is suspended meanwhile, holding no thread of the cooperative pool.
///
/// Cancelling the task stops the save before its commit: at the next write (a tensor, a
/// chunk of compressed output) or just before the rename that commits it. It then throws
/// ``CheckpointError`` with code `.cancelled`, the temporary file is removed, and the
/// checkpoint already under the name, if any, is untouched. A save that has committed is never
/// reported as cancelled. A task cancelled before the call throws at once, touching nothing.
///
/// - Returns: The saved paths, indexed by rank, as the synchronous call returns them.
/// - Throws: ``CheckpointError``, as the synchronous call throws it.
@discardableResult
public func saveCheckpoint(
    _ state: TrainingState,
    filename: String = "ep{epoch}-ba{batch}-rank{rank}",
    format: SaveFormat = .file,
    weightsOnly: Bool = false,
    ignoreKeys: IgnoreKeys? = nil,
    compression: CompressionOptions = CompressionOptions(),
    limits: ReadingLimits = ReadingLimits(),
    sharding: Sharding? = nil,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) async throws(CheckpointError) -> [String] {
    try await BlockingWorkPool.shared.run("saving", path: filename) { () throws(CheckpointError) in
        try saveCheckpoint(
            state, filename: filename, format: format, weightsOnly: weightsOnly, ignoreKeys: ignoreKeys,
            compression: compression, limits: limits, sharding: sharding, processGroup: processGroup, progress: progress)
    }
}

/// Saves any checkpoint tree as ``saveCheckpoint(tree:filename:format:runName:timestamp:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)``
/// does, from Swift concurrency: the writing runs on a thread of the library's own, and the
/// caller's task is suspended meanwhile, holding no thread of the cooperative pool.
///
/// Cancelling the task stops the save before its commit: at the next write (a tensor, a
/// chunk of compressed output) or just before the rename that commits it. It then throws
/// ``CheckpointError`` with code `.cancelled`, the temporary file is removed, and the
/// checkpoint already under the name, if any, is untouched. A save that has committed is never
/// reported as cancelled. A task cancelled before the call throws at once, touching nothing.
///
/// - Returns: The saved paths, indexed by rank.
/// - Throws: ``CheckpointError``, as the synchronous call throws it.
@discardableResult
public func saveCheckpoint(
    tree: StateValue,
    filename: String,
    format: SaveFormat = .file,
    runName: String = "",
    timestamp: Timestamp = Timestamp(),
    weightsOnly: Bool = false,
    ignoreKeys: IgnoreKeys? = nil,
    compression: CompressionOptions = CompressionOptions(),
    limits: ReadingLimits = ReadingLimits(),
    sharding: Sharding? = nil,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) async throws(CheckpointError) -> [String] {
    try await BlockingWorkPool.shared.run("saving", path: filename) { () throws(CheckpointError) in
        try saveCheckpoint(
            tree: tree, filename: filename, format: format, runName: runName, timestamp: timestamp,
            weightsOnly: weightsOnly, ignoreKeys: ignoreKeys, compression: compression, limits: limits,
            sharding: sharding, processGroup: processGroup, progress: progress)
    }
}

/// Loads a checkpoint into `state` as ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)``
/// does, from Swift concurrency: the reading and checking run on a thread of the library's
/// own, and the caller's task is suspended meanwhile, holding no thread of the cooperative pool.
///
/// `state` changes only when the whole load succeeds. Cancelling the task stops the load at
/// the next tensor it reads or verifies (or the next piece of a decompression or a ranged
/// read): it throws ``CheckpointError`` with code `.cancelled` and `state` is unchanged.
///
/// - Returns: The load's result: the path read, the keys that did not match, this rank's rng.
/// - Throws: ``CheckpointError``, as the synchronous call throws it.
@discardableResult
public func loadCheckpoint(
    _ path: String,
    into state: inout TrainingState,
    weightsOnly: Bool = false,
    strict: Bool = true,
    ignoreKeys: IgnoreKeys? = nil,
    verifyChecksums: Bool = true,
    limits: ReadingLimits = ReadingLimits(),
    shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) async throws(CheckpointError) -> LoadResult {
    let before = state
    let (result, after) = try await BlockingWorkPool.shared.run("loading", path: path) { () throws(CheckpointError) in
        var state = before
        let result = try loadCheckpoint(
            path, into: &state, weightsOnly: weightsOnly, strict: strict, ignoreKeys: ignoreKeys,
            verifyChecksums: verifyChecksums, limits: limits, shardPlan: shardPlan, processGroup: processGroup,
            progress: progress)
        return (result, state)
    }
    state = after
    return result
}

/// Loads a checkpoint as a new training state as ``loadCheckpoint(_:weightsOnly:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)``
/// does, from Swift concurrency, on a thread of the library's own.
///
/// Cancelling the task stops the load at the next tensor it reads or verifies, with code
/// `.cancelled`.
///
/// - Throws: ``CheckpointError``, as the synchronous call throws it.
public func loadCheckpoint(
    _ path: String,
    weightsOnly: Bool = false,
    ignoreKeys: IgnoreKeys? = nil,
    verifyChecksums: Bool = true,
    limits: ReadingLimits = ReadingLimits(),
    shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) async throws(CheckpointError) -> TrainingState {
    try await BlockingWorkPool.shared.run("loading", path: path) { () throws(CheckpointError) in
        try loadCheckpoint(
            path, weightsOnly: weightsOnly, ignoreKeys: ignoreKeys, verifyChecksums: verifyChecksums, limits: limits,
            shardPlan: shardPlan, processGroup: processGroup, progress: progress)
    }
}

/// Reads any checkpoint as a tree as ``loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:progress:)``
/// does, from Swift concurrency, on a thread of the library's own.
///
/// Cancelling the task stops the read at the next tensor it reads or verifies, with code
/// `.cancelled`.
///
/// - Throws: ``CheckpointError``, as the synchronous call throws it.
public func loadCheckpointTree(
    _ path: String,
    verifyChecksums: Bool = true,
    limits: ReadingLimits = ReadingLimits(),
    shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) async throws(CheckpointError) -> LoadedTree {
    try await BlockingWorkPool.shared.run("loading", path: path) { () throws(CheckpointError) in
        try loadCheckpointTree(
            path, verifyChecksums: verifyChecksums, limits: limits, shardPlan: shardPlan, processGroup: processGroup,
            progress: progress)
    }
}
