import Logging

/// What ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y`` found.
public struct LoadResult: Sendable {
    /// The file that was loaded (the path with its variables filled in).
    public var path: String
    /// Model keys the target state has and the checkpoint lacks (they keep their values).
    public var missingKeys: [String]
    /// Model keys the checkpoint has and the target state lacks (they were not loaded).
    public var unexpectedKeys: [String]
    /// This rank's random-number-generator state, when the checkpoint holds one for every rank.
    public var rng: StateValue?
    /// Ignore-keys patterns that matched nothing.
    public var unmatchedIgnoreKeys: [String]
}

/// Loads a checkpoint into a training state, as Composer's `load_checkpoint` does.
///
/// The format is recognised from the file's bytes. Native files are memory-mapped and their
/// checksums verified before anything is applied. `state` changes only when the whole load
/// succeeds.
///
/// In a full load every part the checkpoint holds replaces the state's (optimizers,
/// schedulers, timestamp, ...); the model is loaded key by key. In a weights-only load only
/// the model is loaded. Strict (the default) refuses a checkpoint whose model keys differ from
/// `state.model`'s and lists both sides; non-strict loads the keys both have and returns the
/// rest. A key whose tensor differs in dtype or shape is always an error.
///
/// - Parameters:
///   - path: The checkpoint's path; it may hold `{rank}`, `{local_rank}`, `{world_size}`,
///     `{local_world_size}`, `{node_rank}` and `{run_name}` (from `state.runName`).
///   - state: The state to load into; its model keys are the ones expected.
///   - weightsOnly: Load only the model.
///   - strict: Refuse missing or unexpected model keys.
///   - ignoreKeys: Parts of the checkpoint to leave out (paths from its root, `state/...`).
///   - verifyChecksums: Check every tensor loaded (in a weights-only load, the model's)
///     against its recorded checksum (native files).
///   - limits: Bounds on reading the checkpoint (``ReadingLimits``: nesting depth,
///     decompression, header sizes); raise the expansion ratio for one that is almost all
///     zeros (it then expands more than the default 1000-fold).
///   - shardPlan: For a sharded checkpoint, which part of each tensor this rank loads
///     (default: rows split evenly across the ranks, which is every tensor whole on one rank).
///   - processGroup: The processes of the run.
///   - progress: Reports the bytes downloaded, decompressed and verified (phases `downloading`,
///     `decompressing`, `verifying`), or for a sharded or DCP checkpoint the bytes of the
///     pieces this rank reads (one phase, `loading`).
///
/// A sharded checkpoint is named by its manifest or by the folder that holds it;
/// it loads on any number of ranks. Rank 0's shard gives the values that are not tensors, and
/// each rank reads only the parts of the shards its plan asks for. A PyTorch Distributed
/// Checkpoint folder (or its `.metadata`) loads the same way, each rank reading only the
/// chunks its plan's boxes overlap (see ``DistributedCheckpoint``).
///
/// A Hugging Face sharded checkpoint (its folder or index) holds a model's tensors only: they
/// load into `state.model` under their names, and the rest of the state is left as it is.
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
) throws(CheckpointError) -> LoadResult {
    if let progress, progress !== CheckpointProgress.current {
        return try CheckpointProgress.reporting(to: progress) { () throws(CheckpointError) in
            try loadCheckpoint(
                path, into: &state, weightsOnly: weightsOnly, strict: strict, ignoreKeys: ignoreKeys, verifyChecksums: verifyChecksums,
                limits: limits, shardPlan: shardPlan, processGroup: processGroup, progress: progress)
        }
    }
    let (file, loaded, tree, unmatched) = try readTrainingState(
        path, runName: state.runName, allowedVariables: FilenameTemplate.loadVariables, weightsOnly: weightsOnly, ignoreKeys: ignoreKeys,
        verifyChecksums: verifyChecksums,
        limits: limits, shardPlan: shardPlan, processGroup: processGroup)

    var result = state
    var missing: [String] = []
    var unexpected: [String] = []
    var mismatched: [String] = []
    for (key, current) in state.model {
        guard let incoming = loaded.model[key] else {
            missing.append(key.description)
            continue
        }
        if case .tensor(let have) = current, case .tensor(let got) = incoming,
            have.dtype != got.dtype || have.shape != got.shape
        {
            mismatched.append(
                "\(key): checkpoint has \(got.dtype.rawValue) \(got.shape), model has \(have.dtype.rawValue) \(have.shape)")
            continue
        }
        result.model[key] = incoming
    }
    for key in loaded.model.keys where state.model[key] == nil { unexpected.append(key.description) }
    guard mismatched.isEmpty else {
        throw CheckpointError(
            .keyMismatch, "model tensors differ in dtype or shape: " + listed(mismatched), path: file)
    }
    if strict && !(missing.isEmpty && unexpected.isEmpty) {
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing from the checkpoint: " + listed(missing)) }
        if !unexpected.isEmpty { parts.append("unexpected in the checkpoint: " + listed(unexpected)) }
        throw CheckpointError(
            .keyMismatch,
            "the checkpoint's model keys do not match the model (\(parts.joined(separator: "; "))); load with strict: false to load the keys both have",
            path: file)
    }

    var rng: StateValue?
    if !weightsOnly {
        let saved = tree.dictValue?["state"]?.dictValue ?? [:]
        if saved["optimizers"] != nil { result.optimizers = loaded.optimizers }
        if saved["schedulers"] != nil { result.schedulers = loaded.schedulers }
        if saved["algorithms"] != nil { result.algorithms = loaded.algorithms }
        if saved["callbacks"] != nil { result.callbacks = loaded.callbacks }
        if saved["scaler"] != nil { result.scaler = loaded.scaler }
        if saved["timestamp"] != nil { result.timestamp = loaded.timestamp }
        if saved["rank_zero_seed"] != nil { result.rankZeroSeed = loaded.rankZeroSeed }
        if saved["run_name"] != nil { result.runName = loaded.runName }
        if saved["dataset_state"] != nil { result.datasetState = loaded.datasetState }
        if saved["integrations"] != nil { result.integrations = loaded.integrations }
        if saved["metadata"] != nil { result.metadata = loaded.metadata }
        for (key, value) in loaded.extra { result.extra[key] = value }
        if !loaded.rng.isEmpty {
            if loaded.rng.count == processGroup.worldSize {
                result.rng = loaded.rng
                rng = loaded.rng[processGroup.rank]
            } else {
                logger.warning(
                    "not restoring rng state: the checkpoint holds \(loaded.rng.count) rng entries but the run has \(processGroup.worldSize) ranks")
            }
        }
    }
    state = result
    return LoadResult(
        path: file, missingKeys: missing, unexpectedKeys: unexpected, rng: rng, unmatchedIgnoreKeys: unmatched)
}

/// Loads a checkpoint as a new training state, with no model to compare keys against.
///
/// Use it to read a checkpoint's contents (`progress` reports as it does there); use
/// ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y`` to
/// resume a run.
public func loadCheckpoint(
    _ path: String,
    weightsOnly: Bool = false,
    ignoreKeys: IgnoreKeys? = nil,
    verifyChecksums: Bool = true,
    limits: ReadingLimits = ReadingLimits(),
    shardPlan: ShardPlan = .splitFirstDimension,
    processGroup: any ProcessGroup = SingleProcessGroup(),
    progress: CheckpointProgress? = nil
) throws(CheckpointError) -> TrainingState {
    if let progress, progress !== CheckpointProgress.current {
        return try CheckpointProgress.reporting(to: progress) { () throws(CheckpointError) in
            try loadCheckpoint(
                path, weightsOnly: weightsOnly, ignoreKeys: ignoreKeys, verifyChecksums: verifyChecksums,
                limits: limits, shardPlan: shardPlan, processGroup: processGroup, progress: progress)
        }
    }
    var state = TrainingState()
    // No state, so no run name: a path that names {run_name} is refused, not filled with "".
    let (_, loaded, _, _) = try readTrainingState(
        path, runName: "", allowedVariables: FilenameTemplate.loadVariables.subtracting([.runName]), weightsOnly: weightsOnly,
        ignoreKeys: ignoreKeys,
        verifyChecksums: verifyChecksums, limits: limits, shardPlan: shardPlan,
        processGroup: processGroup)
    if weightsOnly {
        state.model = loaded.model
    } else {
        state = loaded
    }
    return state
}

/// Opens, verifies and filters a checkpoint (one file, or the shards a manifest lists), and
/// reads its training state. Returns the path read (a file or a manifest). A weights-only
/// load decodes and verifies only the model's tensors (of a Composer-layout tree).
///
/// A weights-only load of an uncompressed file in an object store fetches its index and the
/// model's tensors alone (``RangedCheckpoint``); the tree it returns then holds only what a
/// weights-only checkpoint keeps.
private func readTrainingState(
    _ pathTemplate: String, runName: String, allowedVariables: Set<FilenameTemplate.Variable>, weightsOnly: Bool,
    ignoreKeys: IgnoreKeys?, verifyChecksums: Bool, limits: ReadingLimits, shardPlan: ShardPlan,
    processGroup: any ProcessGroup
) throws(CheckpointError) -> (path: String, state: TrainingState, tree: StateValue, unmatched: [String]) {
    let template = try FilenameTemplate(pathTemplate, allowedVariables: allowedVariables)
    var path = template.render(FilenameValues(timestamp: Timestamp(), runName: runName, processGroup: processGroup))
    var tree: StateValue
    var ranged: RangedCheckpoint?
    if let folder = try DistributedCheckpoint.locate(path) {
        path = folder
        tree = try DCPLoad.read(folder: folder, plan: shardPlan, verifyChecksums: verifyChecksums, processGroup: processGroup).tree
    } else if let manifest = try ShardManifest.locate(path) {
        path = manifest
        tree = try ShardedLoad.read(
            manifestAt: manifest, plan: shardPlan, verifyChecksums: verifyChecksums, limits: limits,
            processGroup: processGroup).tree
    } else if weightsOnly, case .remote(let location) = StoragePath(path),
        let opened = try RangedCheckpoint.open(location, limits: limits)
    {
        ranged = opened
        tree = try weightsOnlyTree(opened.file.tree)
    } else {
        let file = try CheckpointFile.open(path, limits: limits)
        let modelOnly = weightsOnly && file.tree.dictValue?["state"]?.dictValue?["model"] != nil
        let loads: (String) -> Bool = { !modelOnly || $0.hasPrefix("state/model/") }
        try file.decode(tensorsWhere: loads)
        if verifyChecksums { try file.verify(tensorsWhere: loads) }
        path = file.path
        tree = file.trainingTree
    }
    // Files were checked as they opened; the trees of sharded and DCP checkpoints are whole only now.
    try limits.checkDepth(of: tree, path: path)
    var unmatched: [String] = []
    if let ignoreKeys {
        unmatched = try ignoreKeys.apply(to: &tree)
        for pattern in unmatched {
            logger.warning("ignore-keys pattern \"\(pattern)\" matched nothing in \(path)")
        }
    }
    try ranged?.fetch(tree.tensors, verify: verifyChecksums)
    do throws(CheckpointError) {
        return (path, try TrainingState(tree: tree), tree, unmatched)
    } catch {
        throw error.at(path: path)
    }
}

/// Up to 20 items of a list, with a count of the rest.
private func listed(_ items: [String]) -> String {
    let shown = items.prefix(20).joined(separator: ", ")
    return items.count > 20 ? "\(shown) and \(items.count - 20) more" : shown
}

extension FilenameTemplate {
    /// The variables a load path may use: those known before the checkpoint is read.
    static let loadVariables: Set<Variable> = [.runName, .rank, .localRank, .worldSize, .localWorldSize, .nodeRank]
}
