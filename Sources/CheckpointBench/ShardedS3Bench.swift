public import Checkpointing
import CheckpointToolSupport
import Foundation

/// `ckpt bench sharded --s3 s3://bucket/prefix` under `mpirun -np N`: sharded saves to and
/// loads from an object store, every rank at once, beside every rank's raw PUT and GET of the
/// same bytes at once (the store's limit for this many clients), in the same run. With two
/// ranks or more it also loads the checkpoint resharded onto half the ranks and reports the
/// bytes that load downloaded against the tensor bytes it needed.
public struct ShardedS3Bench {
    struct Result: BenchReport {
        var worldSize: Int
        var repeats: Int
        var tensorBytes: Int
        var fileBytes: Int
        var rawPut: Double
        var rawGet: Double
        var save: Double
        var load: Double
        /// The bytes every rank's load downloaded, summed.
        var loadDownloaded: Int
        /// Ranks of the resharded load, and what it downloaded (summed) and needed.
        var reshardRanks: Int?
        var reshardDownloaded: Int?
        var reshardIndexBytes: Int?

        func text() -> String {
            var rows = [["step (all ranks at once)", "time", "aggregate throughput", "vs raw"]]
            rows.append(timedRow("raw PUT of each rank's bytes", rawPut, bytes: fileBytes, against: rawPut))
            rows.append(timedRow("sharded save to s3://, committed", save, bytes: fileBytes, against: rawPut))
            rows.append(timedRow("raw GET of each rank's bytes", rawGet, bytes: fileBytes, against: rawGet))
            rows.append(timedRow("sharded load from s3://, verified", load, bytes: fileBytes, against: rawGet))
            var lines = [
                "\(worldSize) rank\(worldSize == 1 ? "" : "s") against one store, each saving its rows of the bench state: "
                    + "\(Units.bytes(tensorBytes)) of tensor data, \(Units.bytes(fileBytes)) in the shards; median of \(repeats)",
                Units.table(rows, rightAligned: [1, 2, 3]),
                "the load downloaded \(Units.bytes(loadDownloaded)) in all (every rank its own pieces and the shards' indexes)",
            ]
            if let reshardRanks, let reshardDownloaded, let reshardIndexBytes {
                lines.append(
                    "resharded \(worldSize) -> \(reshardRanks): downloaded \(Units.bytes(reshardDownloaded)) for \(Units.bytes(tensorBytes)) of tensors needed "
                        + "plus \(Units.bytes(reshardIndexBytes)) of indexes and manifests read (\(String(format: "%.3f", Double(reshardDownloaded) / Double(tensorBytes)))x the tensor bytes)")
            }
            return lines.joined(separator: "\n")
        }

        func json() -> [String: Any] {
            var object: [String: Any] = [
                "world_size": worldSize, "repeats": repeats, "tensor_bytes": tensorBytes, "file_bytes": fileBytes,
                "raw_put_seconds": rawPut, "raw_get_seconds": rawGet, "save_seconds": save, "load_seconds": load,
                "save_bytes_per_second": Double(fileBytes) / save, "load_bytes_per_second": Double(fileBytes) / load,
                "save_vs_raw_put": rawPut / save, "load_vs_raw_get": rawGet / load, "load_bytes_downloaded": loadDownloaded,
            ]
            if let reshardRanks, let reshardDownloaded, let reshardIndexBytes {
                object["reshard_ranks"] = reshardRanks
                object["reshard_bytes_downloaded"] = reshardDownloaded
                object["reshard_index_bytes"] = reshardIndexBytes
            }
            return object
        }
    }

    let state: TrainingState
    let prefix: ObjectLocation
    let folder: String
    let repetitions: Int
    let processGroup: any ProcessGroup

    /// The benchmark, ready to ``run()``.
    public init(state: TrainingState, prefix: ObjectLocation, folder: String, repetitions: Int, processGroup: any ProcessGroup) {
        self.state = state
        self.prefix = prefix
        self.folder = folder
        self.repetitions = repetitions
        self.processGroup = processGroup
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        let group = processGroup
        let (part, sharding) = try ShardPlan.splitFirstDimension.apply(to: state.tree, rank: group.rank, worldSize: group.worldSize)
        let run = prefix.appending("bench-\(UInt32.random(in: 0...UInt32.max))-of-\(group.worldSize)")
        // Every rank must use the same run folder: rank 0's.
        let shared = try group.broadcast(Array(run.key.utf8), from: 0, timeout: group.collectiveTimeout)
        let folderKey = String(decoding: shared, as: UTF8.self)
        let runFolder = ObjectLocation(scheme: prefix.scheme, bucket: prefix.bucket, key: folderKey)
        let store = try ObjectStores.store(for: runFolder)
        defer { cleanUp(runFolder, store: store) }

        let local = "\(folder)/raw-rank\(group.rank).bin"
        try rawWrite(part.tensors.map(\.tensor), to: local)
        defer { try? FileManager.default.removeItem(atPath: local) }
        let raw = runFolder.appending("raw-rank\(group.rank).bin")
        let downloaded = "\(folder)/downloaded-rank\(group.rank).bin"
        let manifest = runFolder.appending("bench-rank0.tar" + ShardManifest.suffix).description

        var put: [Double] = [], get: [Double] = [], save: [Double] = [], load: [Double] = []
        var loadDownloaded = 0
        for _ in 0..<repetitions {
            put.append(try together { _ = try store.upload(file: local, to: raw) })
            get.append(try together { _ = try store.download(raw, to: downloaded) })
            try? FileManager.default.removeItem(atPath: downloaded)
            save.append(try together {
                _ = try saveCheckpoint(
                    tree: part, filename: runFolder.appending("bench-rank{rank}").description, runName: state.runName,
                    timestamp: state.timestamp, sharding: sharding, processGroup: group)
            })
            let before = ObjectStores.transfers.snapshot
            load.append(try together { _ = try loadCheckpointTree(manifest, processGroup: group) })
            loadDownloaded = try sum((ObjectStores.transfers.snapshot - before).bytesDownloaded)
        }
        let fileBytes = try ShardManifest.read(manifest).shards.reduce(0) { $0 + $1.size }

        var reshardRanks: Int?, reshardDownloaded: Int?, reshardIndexBytes: Int?
        if group.worldSize >= 2 {
            // The first half of the ranks split every tensor between them; the others load nothing.
            let half = group.worldSize / 2
            let plan = ShardPlan { path, shape, rank, _ in
                rank < half ? ShardPlan.splitFirstDimension.slice(path, shape, rank, half) : nil
            }
            let before = ObjectStores.transfers.snapshot
            let tree = try loadCheckpointTree(manifest, shardPlan: plan, processGroup: group).tree
            let fetched = (ObjectStores.transfers.snapshot - before).bytesDownloaded
            let held = tree.tensors.reduce(0) { $0 + $1.tensor.byteCount }
            reshardRanks = half
            reshardDownloaded = try sum(fetched)
            reshardIndexBytes = try sum(fetched) - sum(held)
        }
        return Result(
            worldSize: group.worldSize, repeats: repetitions, tensorBytes: state.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount },
            fileBytes: fileBytes, rawPut: median(put), rawGet: median(get), save: median(save), load: median(load),
            loadDownloaded: loadDownloaded, reshardRanks: reshardRanks, reshardDownloaded: reshardDownloaded,
            reshardIndexBytes: reshardIndexBytes)
    }

    /// `value` summed over the ranks.
    private func sum(_ value: Int) throws -> Int {
        try processGroup.allGather(Array(String(value).utf8), timeout: processGroup.collectiveTimeout)
            .reduce(0) { $0 + (Int(String(decoding: $1, as: UTF8.self)) ?? 0) }
    }

    /// Seconds from a barrier before every rank starts `body` to a barrier after all finished.
    private func together(_ body: () throws -> Void) throws -> Double {
        try processGroup.barrier(timeout: processGroup.collectiveTimeout)
        return try time {
            try body()
            try processGroup.barrier(timeout: processGroup.collectiveTimeout)
        }
    }

    /// Deletes what this rank put in the store (rank 0 also the manifest).
    private func cleanUp(_ runFolder: ObjectLocation, store: any ObjectStore) {
        var objects = [runFolder.appending("raw-rank\(processGroup.rank).bin"), runFolder.appending("bench-rank\(processGroup.rank).tar")]
        if processGroup.rank == 0 { objects.append(runFolder.appending("bench-rank0.tar" + ShardManifest.suffix)) }
        for object in objects { try? store.delete(object) }
    }
}
