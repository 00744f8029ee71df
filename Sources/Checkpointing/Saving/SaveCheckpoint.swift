import Logging

let logger = Logger(label: "swift-checkpointing")

/// Saves a training state, as Composer's `save_checkpoint` does.
///
/// The file name is a ``FilenameTemplate`` filled from the state's timestamp and run name and
/// the process's rank; its extension chain chooses the format (`.safetensors` or none: the
/// native format; `.pt`: torch), a tar container (`.tar`, `.tgz`) and a compression (`.gz`,
/// `.bz2`, `.xz`, `.lzma`, `.zst`, `.lz4`, `.lzo`), written in-process in one streaming pass.
/// Missing folders are created. Only global rank 0 writes; every rank returns the
/// same paths. The write is atomic and durable: the file appears under its name complete and
/// flushed to disk, or not at all, and a file it replaces stays intact until then.
///
/// With `sharding`, every rank writes its own part of the state to its own tarball, and rank 0
/// commits the checkpoint with a ``ShardManifest`` once every rank has written; the template must contain `{rank}`, and weights-only is refused. Load it on any
/// number of ranks with ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y``.
///
/// With `format: .huggingFaceSharded(maxShardSize:)`, the name is a folder that gets the
/// model's tensors as a Hugging Face sharded checkpoint, the index written last (see
/// <doc:HuggingFaceCheckpoints>); the rest of the state has no place in it.
///
/// With `format: .distributedCheckpoint`, the name is a PyTorch Distributed Checkpoint folder
/// that gets the whole tree: rank 0's data file alone, or with `sharding` every rank's, and
/// `.metadata` written last by rank 0 once every rank has written (see <doc:PyTorchDistributedCheckpoints>).
///
/// ```swift
/// let paths = try saveCheckpoint(state, filename: "{run_name}/ep{epoch}-ba{batch}.safetensors")
/// ```
///
/// - Parameters:
///   - state: The state to save.
///   - filename: The file name template (default `ep{epoch}-ba{batch}-rank{rank}`).
///   - format: One file (the default), a Hugging Face sharded folder, or a DCP folder.
///   - weightsOnly: Save only `state/model`, `state/integrations` and `state/metadata`, no rng.
///   - ignoreKeys: Parts to leave out; a pattern that matches nothing is logged as a warning.
///   - compression: The level and threads when the name asks for compression (fast defaults).
///   - limits: The nesting depth the tree may have (``ReadingLimits/maximumDepth``): the one
///     every load allows by default, so that what is saved loads back; raise it only with the
///     loads that will read the checkpoint.
///   - sharding: Save sharded: which part of each global tensor this rank's tensors hold
///     (`Sharding()` when every tensor is whole). `nil` (the default): rank 0 saves alone.
///   - processGroup: The processes of the run (default: this process alone, which is refused
///     when the launcher's environment says the run has several processes).
///   - progress: Reports the bytes written (phase `saving`) and, to an object store, uploaded
///     (`uploading`).
/// - Returns: The saved paths, indexed by rank: one path (a Hugging Face checkpoint's index, a
///   DCP folder), or with `sharding` every rank's shard.
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
) throws(CheckpointError) -> [String] {
    try saveCheckpoint(
        tree: state.tree, filename: filename, format: format, runName: state.runName, timestamp: state.timestamp,
        weightsOnly: weightsOnly, ignoreKeys: ignoreKeys, compression: compression, limits: limits, sharding: sharding,
        processGroup: processGroup, progress: progress)
}

/// Saves any checkpoint tree, with the template's variables taken from `runName` and `timestamp`.
///
/// This is what `ckpt convert` uses: it keeps every part of a tree, Composer layout or not.
/// `weightsOnly` needs a tree in Composer's layout (a `"state"` dict at its root). A Hugging
/// Face `format` takes `state/model`'s tensors from a tree in Composer's layout, and every tensor
/// of any other tree (named by their keys joined with dots). `progress` reports the bytes
/// written and uploaded, as it does for the other `saveCheckpoint`.
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
) throws(CheckpointError) -> [String] {
    if let progress, progress !== CheckpointProgress.current {
        return try CheckpointProgress.reporting(to: progress) { () throws(CheckpointError) in
            try saveCheckpoint(
                tree: tree, filename: filename, format: format, runName: runName, timestamp: timestamp, weightsOnly: weightsOnly,
                ignoreKeys: ignoreKeys, compression: compression, limits: limits, sharding: sharding, processGroup: processGroup,
                progress: progress)
        }
    }
    let template = try FilenameTemplate(filename)
    try refuseLoneProcessInMultiProcessRun(processGroup)
    let values = FilenameValues(timestamp: timestamp, runName: runName, processGroup: processGroup)
    if format == .distributedCheckpoint {
        return [
            try saveDistributedCheckpoint(
                tree, template: template, values: values, weightsOnly: weightsOnly, ignoreKeys: ignoreKeys, limits: limits,
                sharding: sharding, processGroup: processGroup)
        ]
    }
    if case .huggingFaceSharded = format, sharding != nil {
        throw CheckpointError(
            .invalidArgument,
            "a Hugging Face checkpoint is written whole, by rank 0: load the tensors whole (shardPlan: .wholeOnRankZero) and save without sharding")
    }
    if let sharding {
        try ShardedSave.check(template: template, weightsOnly: weightsOnly)
        return try ShardedSave.save(
            tree, rendered: try template.renderPath(values), values: values, ignoreKeys: ignoreKeys, compression: compression,
            limits: limits, sharding: sharding, processGroup: processGroup).paths
    }
    // A Hugging Face checkpoint is a folder, unless the name is its index.
    let isFolder = format != .file && !template.render(values).hasSuffix(HuggingFaceSharded.indexSuffix)
    let path = try template.renderPath(values, isFolder: isFolder)
    let target = SaveTarget(path: path)

    var outcome: Result<String, CheckpointError> = .success(path)
    if processGroup.rank == 0 {
        outcome = Result { () throws(CheckpointError) -> String in
            var selected = weightsOnly ? try weightsOnlyTree(tree) : tree
            if let ignoreKeys {
                for pattern in try ignoreKeys.apply(to: &selected) {
                    logger.warning("ignore-keys pattern \"\(pattern)\" matched nothing in the checkpoint being saved")
                }
            }
            // Before the format's own bounds, so every format refuses the same trees, as loads do.
            try limits.checkDepth(of: selected)
            var saved = path
            switch (format, target.format) {
            case (.file, .native): try NativeFormat.save(selected, to: path, compression: compression)
            case (.file, .torch): try TorchFormat.save(selected, to: path, compression: compression)
            case (.huggingFaceSharded(let maxShardSize), _):
                saved = try HuggingFaceWriter.save(selected, to: path, maxShardSize: maxShardSize)
            case (.distributedCheckpoint, _):
                preconditionFailure("every rank takes part in a DCP save, which returned above")
            }
            logger.debug("saved checkpoint", metadata: ["path": "\(saved)"])
            return saved
        }
    }
    // Every rank learns rank 0's outcome (its error, whole), so no rank reports success for a
    // file that failed.
    let message: [UInt8]
    switch outcome {
    case .success(let path): message = RankOutcome.success(Array(path.utf8))
    case .failure(let error): message = RankOutcome.failure(error, rank: 0)
    }
    let shared = try processGroup.broadcast(message, from: 0, timeout: processGroup.collectiveTimeout)
    if case .failure(let error) = outcome { throw error }
    return [String(decoding: try RankOutcome.payload(of: shared, from: 0), as: UTF8.self)]
}

/// Refuses the default single-process group in a process its launcher started as one of
/// several: every rank would write rank 0's files.
func refuseLoneProcessInMultiProcessRun(
    _ group: any ProcessGroup, environment: [String: String] = ProcessEnvironment.current
) throws(CheckpointError) {
    guard group is SingleProcessGroup else { return }
    let launch = try LaunchEnvironment.detect(from: environment)
    guard launch.worldSize == 1 else {
        throw CheckpointError(
            .distributed,
            "this process is rank \(launch.rank) of \(launch.worldSize) (from the launcher's environment) but no process group was given, so every rank would write rank 0's files; pass processGroup: MPIProcessGroup() (module CheckpointingMPI)")
    }
}

/// `{"state": {"model", "integrations", "metadata"}}`: what a weights-only checkpoint keeps.
func weightsOnlyTree(_ tree: StateValue) throws(CheckpointError) -> StateValue {
    guard let state = tree.dictValue?["state"]?.dictValue else {
        throw CheckpointError(
            .invalidState, "weights-only needs a training checkpoint with a \"state\" dict at its root; this tree has none")
    }
    var kept = StateDict()
    for key in ["model", "integrations", "metadata"] {
        if let value = state[key] { kept[key] = value }
    }
    return .dict(["state": .dict(kept)])
}

extension FilenameValues {
    /// The template variables of a save: the timestamp, the run name and this process's ranks.
    init(timestamp: Timestamp, runName: String, processGroup: any ProcessGroup) {
        self.init(
            runName: runName, rank: processGroup.rank, localRank: processGroup.localRank,
            worldSize: processGroup.worldSize, localWorldSize: processGroup.localWorldSize,
            nodeRank: processGroup.nodeRank, epoch: timestamp.epoch, batch: timestamp.batch,
            batchInEpoch: timestamp.batchInEpoch, sample: timestamp.sample,
            sampleInEpoch: timestamp.sampleInEpoch, token: timestamp.token,
            tokenInEpoch: timestamp.tokenInEpoch, totalWct: timestamp.totalWct.secondsValue,
            epochWct: timestamp.epochWct.secondsValue, batchWct: timestamp.batchWct.secondsValue)
    }
}
