public import Checkpointing
import CheckpointToolSupport
import Foundation

/// `ckpt bench hf`: every tensor of the state saved as a Hugging Face sharded folder
/// beside the native save of the state, in the same run; then each opened cold (the native
/// file's header; the index and every shard's header, checked against each other) and read
/// back cold with every tensor's checksum verified.
public struct HuggingFaceBench {
    var state: TrainingState
    var folder: String
    var repetitions: Int
    var maxShardSize: Int

    struct Result: BenchReport {
        var tensorCount: Int
        var tensorBytes: Int
        var nativeBytes: Int
        var folderBytes: Int
        var shardCount: Int
        var maxShardSize: Int
        var repeats: Int
        var nativeSave: Double
        var folderSave: Double
        var nativeOpen: Double
        var folderOpen: Double
        var nativeReadVerify: Double
        var folderReadVerify: Double

        func text() -> String {
            var rows = [["step", "native file", "hf-sharded folder"]]
            func row(_ name: String, _ native: Double, _ folder: Double, nativeBytes: Int, folderBytes: Int) {
                rows.append([
                    name, String(format: "%.3f s (%@)", native, Units.rate(bytes: nativeBytes, seconds: native)),
                    String(format: "%.3f s (%@)", folder, Units.rate(bytes: folderBytes, seconds: folder)),
                ])
            }
            row("durable save", nativeSave, folderSave, nativeBytes: nativeBytes, folderBytes: folderBytes)
            rows.append([
                "open (cold, headers only)", String(format: "%.2f ms", nativeOpen * 1000), String(format: "%.2f ms", folderOpen * 1000),
            ])
            row("open + verified read (cold)", nativeReadVerify, folderReadVerify, nativeBytes: nativeBytes, folderBytes: folderBytes)
            return """
                GPT-2-small-shaped state: \(tensorCount) tensors, \(Units.bytes(tensorBytes)) of tensor data; native file \
                \(Units.bytes(nativeBytes)); hf-sharded folder \(Units.bytes(folderBytes)) in \(shardCount) shards of at most \
                \(Units.bytes(maxShardSize)); median of \(repeats)
                \(Units.table(rows, rightAligned: [1, 2]))
                """
        }

        func json() -> [String: Any] {
            [
                "format": "hf", "tensor_count": tensorCount, "tensor_bytes": tensorBytes, "native_file_bytes": nativeBytes,
                "hf_folder_bytes": folderBytes, "hf_shard_count": shardCount, "hf_max_shard_size": maxShardSize, "repeats": repeats,
                "native_save_seconds": nativeSave, "hf_save_seconds": folderSave, "native_open_seconds": nativeOpen,
                "hf_open_seconds": folderOpen, "native_read_verify_seconds": nativeReadVerify, "hf_read_verify_seconds": folderReadVerify,
            ]
        }
    }

    /// The benchmark, ready to ``run()``.
    public init(state: TrainingState, folder: String, repetitions: Int, maxShardSize: Int) {
        self.state = state
        self.folder = folder
        self.repetitions = repetitions
        self.maxShardSize = maxShardSize
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        // Every tensor of the state, by its flattened path: the same bytes as the native file
        // (a training state would give a Hugging Face folder its model alone).
        let tensors = state.tree.tensors
        let flat = StateValue.dict(StateDict(tensors.map { (StateKey.string($0.path), StateValue.tensor($0.tensor)) }))
        let nativePath = folder + "/bench.safetensors"
        let folderPath = folder + "/bench-hf"
        var nativeSave: [Double] = [], folderSave: [Double] = [], nativeOpen: [Double] = [], folderOpen: [Double] = []
        var nativeRead: [Double] = [], folderRead: [Double] = []
        var nativeBytes = 0, folderBytes = 0, shardCount = 0
        for repetition in 0..<repetitions {
            // Alternate which format goes first, so neither always meets a busier disk.
            for folderFirst in repetition % 2 == 0 ? [false, true] : [true, false] {
                if folderFirst {
                    folderSave.append(try time {
                        try saveCheckpoint(tree: flat, filename: folderPath, format: .huggingFaceSharded(maxShardSize: maxShardSize))
                    })
                } else {
                    nativeSave.append(try time { try saveCheckpoint(state, filename: nativePath) })
                }
            }
            let files = try FileManager.default.contentsOfDirectory(atPath: folderPath).map { folderPath + "/" + $0 } + [nativePath]
            files.forEach(dropFromPageCache)
            var file: CheckpointFile?
            nativeOpen.append(try time { file = try CheckpointFile.open(nativePath) })
            nativeBytes = file?.byteCount ?? 0
            folderOpen.append(try time { file = try CheckpointFile.open(folderPath) })
            folderBytes = file?.byteCount ?? 0
            shardCount = file?.huggingFaceShards?.shards.count ?? 0
            file = nil
            for folderFirst in repetition % 2 == 0 ? [true, false] : [false, true] {
                files.forEach(dropFromPageCache)
                if folderFirst {
                    folderRead.append(try time { try CheckpointFile.open(folderPath).verify() })
                } else {
                    nativeRead.append(try time { try CheckpointFile.open(nativePath).verify() })
                }
            }
            try FileManager.default.removeItem(atPath: nativePath)
            try FileManager.default.removeItem(atPath: folderPath)
        }
        return Result(
            tensorCount: tensors.count, tensorBytes: tensors.reduce(0) { $0 + $1.tensor.byteCount }, nativeBytes: nativeBytes,
            folderBytes: folderBytes, shardCount: shardCount, maxShardSize: maxShardSize, repeats: repetitions,
            nativeSave: median(nativeSave), folderSave: median(folderSave), nativeOpen: median(nativeOpen),
            folderOpen: median(folderOpen), nativeReadVerify: median(nativeRead), folderReadVerify: median(folderRead))
    }
}
