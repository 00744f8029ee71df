import Checkpointing
import CheckpointingMPI
import CheckpointingTestSupport
import Foundation

/// Generous: healthy ranks on a loaded machine may take a while to reach a collective.
private let healthyTimeout = Duration.seconds(120)

/// The whole state the sharded scenarios save at `batch`: first dimensions that split
/// unevenly, tensors too small to split, integer keys, an rng list; about `megabytes` MiB.
func scenarioState(batch: Int, megabytes: Int, rngEntries: Int = 1) throws -> TrainingState {
    var rng = SplitMix64(seed: UInt64(batch) &* 0x9E37_79B9 &+ 17)
    func tensor(_ dtype: DType, _ shape: [Int]) throws -> StateValue {
        let count = shape.reduce(dtype.byteSize, *)
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            for index in stride(from: 0, to: count, by: 8) {
                var word = rng.next()
                withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: index).copyMemory(from: $0.baseAddress!, byteCount: min(8, count - index)) }
            }
        }
        return .tensor(try Tensor(dtype: dtype, shape: shape, bytes: bytes))
    }
    let rows = max(7, megabytes << 20 / (256 * 4)) | 1  // odd: never an even split
    var state = TrainingState(runName: "mpi-run")
    state.model = [
        "emb.weight": try tensor(.float32, [rows, 256]), "layer.weight": try tensor(.bfloat16, [37, 16]),
        "layer.bias": try tensor(.float32, [3]), "steps": try tensor(.int64, []),
    ]
    state.optimizers = ["AdamW": ["state": [0: ["exp_avg": try tensor(.float32, [37, 16])]], "param_groups": [["lr": 0.01, "params": [0]]]]]
    state.timestamp = Timestamp(epoch: 1, batch: batch, sample: batch * 8)
    state.rng = try (0..<rngEntries).map { _ in ["torch": try tensor(.uint8, [816])] }
    return state
}

/// `rank`'s rows of the scenario state at `batch`, and what they are.
func scenarioPart(batch: Int, megabytes: Int, rank: Int, worldSize: Int, rngEntries: Int = 1) throws -> (TrainingState, Sharding) {
    let (tree, sharding) = try ShardPlan.splitFirstDimension.apply(
        to: scenarioState(batch: batch, megabytes: megabytes, rngEntries: rngEntries).tree, rank: rank, worldSize: worldSize)
    return (try TrainingState(tree: tree), sharding)
}

/// `sharded-save`: every rank saves its rows at batch 4; every rank must get every rank's path.
func runShardedSave(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    let (part, sharding) = try scenarioPart(batch: 4, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize)
    let paths = try saveCheckpoint(part, filename: worker.folder + "/ep{epoch}-ba{batch}-rank{rank}", sharding: sharding, processGroup: group)
    let expected = (0..<group.worldSize).map { "\(worker.folder)/ep1-ba4-rank\($0).tar" }
    try worker.expect(paths == expected, "saveCheckpoint returned \(paths), expected \(expected)")
    let everyones = try group.allGather(Array(paths.joined(separator: "\n").utf8), timeout: healthyTimeout)
    try worker.expect(Set(everyones).count == 1, "ranks got different paths")
    try worker.expect(paths.allSatisfy { FileManager.default.fileExists(atPath: $0) }, "a shard is missing")
    worker.report("saved \(paths.count) shards; every rank got every path")
    return .passed
}

/// `sharded-load`: every rank loads its rows (the default plan for this world size) and every
/// tensor whole; both must equal the original, bit for bit.
func runShardedLoad(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    let expected = try scenarioPart(batch: 4, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize).0
    let loaded = try loadCheckpoint(worker.folder, processGroup: group)
    try worker.expect(loaded.tree == expected.tree, "rank \(group.rank)'s rows differ from the original's")
    let whole = try loadCheckpoint(worker.folder, shardPlan: .whole, processGroup: group)
    let original = try scenarioState(batch: 4, megabytes: worker.megabytes)
    try worker.expect(whole.tree == original.tree, "the whole tensors differ from the original's")
    let bytes = loaded.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount }
    worker.report("loaded its rows (\(bytes) bytes) and every tensor whole, bit-identical to the original")
    return .passed
}

/// The saver of the saver scenarios.
private func saver(_ worker: Worker, group: MPIProcessGroup, sharding: Sharding, asynchronous: Bool = false) throws -> CheckpointSaver {
    try CheckpointSaver(options: .init(
        folder: worker.folder, filename: "ba{batch}-rank{rank}", saveInterval: "4ba", asynchronous: asynchronous,
        saveOnTermination: false, sharding: sharding, processGroup: group))
}

/// `sharded-saver-train`: 8 batches with a sharded saver that saves every 4 (in the
/// background with `--variant async`); every rank reports the saves it made.
func runShardedSaverTrain(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    let part = { (batch: Int) in
        try scenarioPart(batch: batch, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize, rngEntries: group.worldSize)
    }
    let saver = try saver(worker, group: group, sharding: try part(0).1, asynchronous: worker.variant == "async")
    try saver.fitStart(try part(0).0)
    for batch in 1...8 { try saver.batchEnd(try part(batch).0) }
    try saver.fitEnd(try part(8).0)
    let saves = try saver.statistics.saves
    try worker.expect(saves == 2, "\(saves) saves, expected 2")
    worker.report("trained 8 batches, saved \(saves) sharded checkpoints")
    return .passed
}

/// `sharded-saver-killed`: a sharded saver saves at batches 4 and 8; rank 2 kills itself
/// while writing its batch-8 shard. The others must fail with the timeout, not hang.
func runShardedSaverKilled(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: worker.timeout)
    let part = { (batch: Int) in
        // One rng entry per rank, as a training run keeps them, so a resume restores them.
        try scenarioPart(batch: batch, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize, rngEntries: group.worldSize)
    }
    // Rank 2's saver dies at its fifth collective (the batch-8 save's report after writing)
    // should the watcher below miss the moment its shard is being written.
    let dying: any ProcessGroup =
        group.rank == 2
        ? FailingCollective(group, number: 5) {
            worker.report("killing itself while writing its shard (at the collective after it)")
            kill(getpid(), SIGKILL)
        } : group
    let saver = try CheckpointSaver(options: .init(
        folder: worker.folder, filename: "ba{batch}-rank{rank}", saveInterval: "4ba", saveOnTermination: false,
        sharding: try part(0).1, processGroup: dying))
    try saver.fitStart(try part(0).0)
    for batch in 1...7 { try saver.batchEnd(try part(batch).0) }
    if group.rank == 2 { killWhenWriting(prefix: ".ba8-rank2.tar.partial-", in: worker.folder, worker) }
    do {
        try saver.batchEnd(try part(8).0)
    } catch let error as CheckpointError where error.code == .distributed && error.message.contains("timed out") {
        worker.report("the batch-8 save failed: \(error)")
        return .timedOut
    }
    throw WorkerFailure("the batch-8 save succeeded although rank 2 died writing it")
}

/// Kills this process (SIGKILL) as soon as a file whose name starts with `prefix` appears in
/// `folder`: a save's temporary file, so the kill lands mid-write.
private func killWhenWriting(prefix: String, in folder: String, _ worker: Worker) {
    let watcher = Thread {
        while true {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            if names.contains(where: { $0.hasPrefix(prefix) }) {
                worker.report("killing itself while writing its shard")
                kill(getpid(), SIGKILL)
            }
            usleep(100)
        }
    }
    watcher.start()
}

/// `sharded-saver-resume`: a new sharded saver autoresumes; every rank reports the batch it
/// resumed at, after checking it got back exactly its rows of that batch.
func runShardedSaverResume(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    let part = { (batch: Int) in
        try scenarioPart(batch: batch, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize, rngEntries: group.worldSize)
    }
    let (fresh, sharding) = try part(0)
    var state = fresh
    guard try saver(worker, group: group, sharding: sharding).autoresume(into: &state) != nil else {
        throw WorkerFailure("autoresume found nothing")
    }
    let batch = state.timestamp.batch
    let expected = try part(batch).0
    if state.tree != expected.tree {
        var differences: [String] = []
        for (got, want) in zip(state.tree.tensors, expected.tree.tensors) where got.path != want.path || got.tensor != want.tensor {
            differences.append("\(got.path) \(got.tensor) vs \(want.path) \(want.tensor)")
        }
        for key in ["timestamp", "run_name", "rank_zero_seed"] where state.tree.dictValue?["state"]?.dictValue?[.string(key)] != expected.tree.dictValue?["state"]?.dictValue?[.string(key)] {
            differences.append(key)
        }
        throw WorkerFailure("the state resumed at batch \(batch) is not this rank's rows of it: \(differences.prefix(5))")
    }
    worker.report("resumed at batch \(batch)")
    return .passed
}
