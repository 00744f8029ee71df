import Checkpointing
import CheckpointingMPI
import CheckpointingS3
import CheckpointingTestSupport
import Foundation

/// Generous: healthy ranks on a loaded machine may take a while to reach a collective.
private let healthyTimeout = Duration.seconds(120)

/// Sends `s3://` to the store of the environment (`S3_ENDPOINT_URL` and the test credentials)
/// and gives this rank a folder no other rank reads: `<--folder>/rank<R>`, holding its staging
/// folder (every upload and ranged read goes through it) and its saver's local folder. A rank
/// that read another rank's files would find nothing there.
private func privateFolder(_ worker: Worker, rank: Int) throws -> String {
    S3ObjectStore.register()
    let folder = "\(worker.folder)/rank\(rank)"
    ObjectStores.stagingFolder = folder + "/staging"
    try FileManager.default.createDirectory(atPath: ObjectStores.stagingFolder, withIntermediateDirectories: true)
    return folder
}

/// The sharded saver of the S3 scenarios: a local folder of this rank's own, the store as
/// `--url`, one save every `interval`, `keep` checkpoints (0: in the store only).
private func s3Saver(
    _ worker: Worker, local: String, group: any ProcessGroup, sharding: Sharding, keep: Int, interval: SaveInterval,
    asynchronous: Bool = false
) throws -> CheckpointSaver {
    try CheckpointSaver(options: .init(
        folder: local + "/checkpoints", filename: "ba{batch}-rank{rank}", saveInterval: interval, checkpointsToKeep: keep,
        remoteFolder: worker.url, asynchronous: asynchronous, saveOnTermination: false, sharding: sharding, processGroup: group))
}

/// `keep` for `--variant`: `upload-only` keeps nothing locally; otherwise 2.
private func keep(_ worker: Worker) -> Int { worker.variant == "upload-only" ? 0 : 2 }

/// Every key below `--url`, sorted, as rank 0 lists them.
private func keysBelow(_ worker: Worker) throws -> [String] {
    guard var prefix = ObjectLocation(worker.url) else { throw WorkerFailure("--url \(worker.url) is not an s3:// URL") }
    if !prefix.key.hasSuffix("/") { prefix.key += "/" }
    return try ObjectStores.store(for: prefix).list(prefix, delimiter: nil).objects.map { String($0.location.key.dropFirst(prefix.key.count)) }.sorted()
}

/// `s3-sharded-save`: every rank uploads its rows at batch 4 to `--url`; every rank must get
/// every rank's object URL.
func runS3ShardedSave(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    _ = try privateFolder(worker, rank: group.rank)
    let (part, sharding) = try scenarioPart(batch: 4, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize)
    let paths = try saveCheckpoint(part, filename: worker.url + "/ep{epoch}-ba{batch}-rank{rank}", sharding: sharding, processGroup: group)
    let expected = (0..<group.worldSize).map { "\(worker.url)/ep1-ba4-rank\($0).tar" }
    try worker.expect(paths == expected, "saveCheckpoint returned \(paths), expected \(expected)")
    let staged = try FileManager.default.contentsOfDirectory(atPath: ObjectStores.stagingFolder)
    try worker.expect(staged.isEmpty, "the staging folder still holds \(staged)")
    worker.report("uploaded its shard; every rank got every object URL")
    return .passed
}

/// `s3-sharded-load`: every rank loads its rows (the default plan for this world size) of the
/// checkpoint `s3-sharded-save` uploaded, from a folder of its own that starts empty, and
/// reports the bytes it downloaded.
func runS3ShardedLoad(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    _ = try privateFolder(worker, rank: group.rank)
    let expected = try scenarioPart(batch: 4, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize).0
    let before = ObjectStores.transfers.snapshot
    let loaded = try loadCheckpoint(worker.url + "/ep1-ba4-rank0.tar" + ShardManifest.suffix, processGroup: group)
    let downloaded = (ObjectStores.transfers.snapshot - before).bytesDownloaded
    try worker.expect(loaded.tree == expected.tree, "rank \(group.rank)'s rows differ from the original's")
    let bytes = loaded.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount }
    worker.report("loaded its rows (\(bytes) bytes), bit-identical to the original, downloading \(downloaded) bytes")
    return .passed
}

/// `s3-sharded-saver-train`: a sharded saver with its local folder on this rank alone and the
/// store as `--url` trains 8 batches and saves after each, in the background, keeping 2
/// (`--variant upload-only`: none locally); rank 0 then reports every key below `--url`.
func runS3ShardedSaverTrain(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    let local = try privateFolder(worker, rank: group.rank)
    let part = { (batch: Int) in
        try scenarioPart(batch: batch, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize, rngEntries: group.worldSize)
    }
    let saver = try s3Saver(worker, local: local, group: group, sharding: try part(0).1, keep: keep(worker), interval: "1ba", asynchronous: true)
    try saver.fitStart(try part(0).0)
    for batch in 1...8 { try saver.batchEnd(try part(batch).0) }
    try saver.fitEnd(try part(8).0)
    let statistics = try saver.statistics
    try worker.expect(statistics.saves == 8, "\(statistics.saves) saves, expected 8")
    worker.report("trained 8 batches, saved \(statistics.saves) sharded checkpoints; the loop waited \(statistics.stall) in all")
    try group.barrier(timeout: healthyTimeout)
    if group.rank == 0 { worker.report("keys: \(try keysBelow(worker).joined(separator: " "))") }
    return .passed
}

/// `s3-sharded-saver-resume`: a new sharded saver whose local folder is empty (a fresh node)
/// autoresumes from the store; rank 0 first reports every key there; every rank reports
/// the batch it resumed at, after checking it got back exactly its rows of that batch.
func runS3ShardedSaverResume(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: healthyTimeout)
    let local = try privateFolder(worker, rank: group.rank)
    let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: local + "/checkpoints")) ?? []
    try worker.expect(leftovers.isEmpty, "the local folder is not empty: \(leftovers)")
    if group.rank == 0 {
        worker.report("keys: \(try keysBelow(worker).joined(separator: " "))")
    }
    let part = { (batch: Int) in
        try scenarioPart(batch: batch, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize, rngEntries: group.worldSize)
    }
    var state = try part(0).0
    let saver = try s3Saver(worker, local: local, group: group, sharding: try part(0).1, keep: keep(worker), interval: "4ba")
    guard let result = try saver.autoresume(into: &state) else { throw WorkerFailure("autoresume found nothing") }
    let batch = state.timestamp.batch
    try worker.expect(state.tree == (try part(batch).0.tree), "the state resumed at batch \(batch) is not this rank's rows of it")
    try worker.expect(result.path.hasPrefix(worker.url), "resumed from \(result.path), not from the store")
    worker.report("resumed at batch \(batch) from \(result.path)")
    return .passed
}

/// `s3-sharded-saver-killed`: a sharded saver uploading straight to the store (no local copy)
/// saves at batches 4 and 8; rank 2 kills itself (SIGKILL) once the first part of its batch-8
/// shard is uploaded, with the rest to come. The others must fail with the timeout.
func runS3ShardedSaverKilled(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: worker.timeout)
    let local = try privateFolder(worker, rank: group.rank)
    // Parts of 1 MiB (the server allows it), one at a time, so a shard goes up in several.
    var configuration = try S3Configuration.fromEnvironment()
    configuration.partSize = 1 << 20
    configuration.maxConcurrency = 1
    let store = try S3ObjectStore(configuration: configuration)
    guard let bucket = ObjectLocation(worker.url)?.bucket else { throw WorkerFailure("--url \(worker.url) is not an s3:// URL") }
    ObjectStores.register(store, for: "s3://\(bucket)")
    let part = { (batch: Int) in
        try scenarioPart(batch: batch, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize, rngEntries: group.worldSize)
    }
    let (start, sharding) = try part(0)
    let saver = try s3Saver(worker, local: local, group: group, sharding: sharding, keep: 0, interval: "4ba")
    try saver.fitStart(start)
    for batch in 1...7 {
        // Only the saved batches need their own state; the others only move the clock.
        var state = start
        state.timestamp = Timestamp(epoch: 1, batch: batch, sample: batch * 8)
        try saver.batchEnd(batch == 4 ? try part(4).0 : state)
    }
    if group.rank == 2 {
        let uploaded = ObjectStores.transfers.snapshot.bytesUploaded
        let watcher = Thread {
            while ObjectStores.transfers.snapshot.bytesUploaded < uploaded + (1 << 20) { usleep(200) }
            worker.report("killing itself mid-upload of its batch-8 shard")
            kill(getpid(), SIGKILL)
        }
        watcher.start()
    }
    do {
        try saver.batchEnd(try part(8).0)
    } catch let error as CheckpointError where error.code == .distributed && error.message.contains("timed out") {
        worker.report("the batch-8 save failed: \(error)")
        return .timedOut
    }
    throw WorkerFailure("the batch-8 save succeeded although rank 2 died uploading it")
}
