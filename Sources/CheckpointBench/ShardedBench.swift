public import Checkpointing
import CheckpointToolSupport
import Foundation

/// Sharded saves and loads on every rank of an `mpirun` (`ckpt bench sharded`): each rank
/// saves its rows of every tensor of the bench state at once; rank 0 reports the aggregate
/// throughput, beside a raw write + fsync of the same bytes by every rank at once (the
/// disk's limit for this many writers).
public struct ShardedBench {
    struct Result: BenchReport {
        var worldSize: Int
        var repeats: Int
        var tensorBytes: Int
        var fileBytes: Int
        var rawWrite: Double
        var save: Double
        var load: Double

        func text() -> String {
            var rows = [["step (all ranks at once)", "time", "aggregate throughput", "vs raw write"]]
            rows.append(timedRow("raw write + fsync", rawWrite, bytes: tensorBytes, against: rawWrite))
            rows.append(timedRow("sharded save, committed", save, bytes: fileBytes, against: rawWrite))
            rows.append(timedRow("sharded load, verified (cold)", load, bytes: fileBytes, against: nil))
            return """
                \(worldSize) rank\(worldSize == 1 ? "" : "s"), each saving its rows of the bench state: \
                \(Units.bytes(tensorBytes)) of tensor data, \(Units.bytes(fileBytes)) in the shards; median of \(repeats)
                \(Units.table(rows, rightAligned: [1, 2, 3]))
                """
        }

        func json() -> [String: Any] {
            [
                "world_size": worldSize, "repeats": repeats, "tensor_bytes": tensorBytes, "file_bytes": fileBytes,
                "raw_write_fsync_seconds": rawWrite, "save_seconds": save, "load_seconds": load,
                "save_bytes_per_second": Double(fileBytes) / save, "save_vs_raw": rawWrite / save,
            ]
        }
    }

    let state: TrainingState
    let folder: String
    let repetitions: Int
    let processGroup: any ProcessGroup

    /// The benchmark, ready to ``run()``.
    public init(state: TrainingState, folder: String, repetitions: Int, processGroup: any ProcessGroup) {
        self.state = state
        self.folder = folder
        self.repetitions = repetitions
        self.processGroup = processGroup
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        let group = processGroup
        let (part, sharding) = try ShardPlan.splitFirstDimension.apply(to: state.tree, rank: group.rank, worldSize: group.worldSize)
        let tensors = part.tensors.map(\.tensor)
        let template = folder + "/bench-rank{rank}"
        let rawPath = "\(folder)/raw-rank\(group.rank).bin"

        var raw: [Double] = [], save: [Double] = [], load: [Double] = []
        var paths: [String] = []
        for _ in 0..<repetitions {
            raw.append(try together { try rawWrite(tensors, to: rawPath) })
            try? FileManager.default.removeItem(atPath: rawPath)
            save.append(try together {
                paths = try saveCheckpoint(
                    tree: part, filename: template, runName: state.runName, timestamp: state.timestamp, sharding: sharding,
                    processGroup: group)
            })
            dropFromPageCache(paths[group.rank])
            load.append(try together { _ = try loadCheckpointTree(folder, processGroup: group) })
        }
        let fileBytes = try ShardManifest.read(ShardManifest.path(forRankZeroShard: paths[0])).shards.reduce(0) { $0 + $1.size }
        return Result(
            worldSize: group.worldSize, repeats: repetitions, tensorBytes: state.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount },
            fileBytes: fileBytes, rawWrite: median(raw), save: median(save), load: median(load))
    }

    /// Seconds from a barrier before every rank starts `body` to a barrier after all finished.
    private func together(_ body: () throws -> Void) throws -> Double {
        try processGroup.barrier(timeout: processGroup.collectiveTimeout)
        return try time {
            try body()
            try processGroup.barrier(timeout: processGroup.collectiveTimeout)
        }
    }
}
