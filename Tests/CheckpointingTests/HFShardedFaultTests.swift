import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Checkpointing

/// A Hugging Face save over an earlier one, with each of its system calls failing in turn
/// (through ``SyscallFaults``): the folder must then hold the earlier checkpoint, the new one
/// (when the failure came after the index's rename), or, when the new shards take the old
/// ones' names, no checkpoint at all; never an index over a mix of old and new shards, and no
/// temporary file.
@Suite struct HFShardedFaultTests {
    /// The earlier checkpoint's and the new one's shard counts.
    struct Scenario: CustomTestStringConvertible, Sendable {
        var previousShards: Int
        var nextShards: Int
        var testDescription: String { "\(previousShards) shards, then \(nextShards)" }
        /// Whether the new shards take the earlier ones' names.
        var collides: Bool { previousShards == nextShards }
    }

    static let scenarios = [Scenario(previousShards: 3, nextShards: 2), Scenario(previousShards: 2, nextShards: 2)]

    /// `tensors` tensors of 64 bytes, so shards of 64 bytes hold one each.
    static func state(seed: UInt64, tensors: Int) throws -> TrainingState {
        var random = SplitMix64(seed: seed)
        var state = TrainingState()
        for index in 0..<tensors {
            state.model["w\(index)"] = .tensor(try Tensor(shape: [16], scalars: (0..<16).map { _ in Float(random.next() % 1000) }))
        }
        return state
    }

    static let format = SaveFormat.huggingFaceSharded(maxShardSize: 64)

    @Test(arguments: scenarios)
    func everyFailingCallLeavesTheOldOrTheNewCheckpointNeverAMix(scenario: Scenario) throws {
        try withTemporaryFolder { folder in
            let out = folder + "/out"
            let previous = try Self.state(seed: 1, tensors: scenario.previousShards)
            let next = try Self.state(seed: 2, tensors: scenario.nextShards)
            func reset() throws {
                try? FileManager.default.removeItem(atPath: out)
                try saveCheckpoint(previous, filename: out, format: Self.format)
            }
            try reset()
            let (clean, trace) = SyscallFaults.run(under: folder) { try saveCheckpoint(next, filename: out, format: Self.format) }
            _ = try clean.get()
            let kinds: [Syscall.Kind] = [.open, .write, .fsync, .close, .rename, .unlink, .stat, .opendir, .mmap]
            var failures = 0
            for kind in kinds {
                for call in 0..<trace.count(kind) {
                    try reset()
                    let (result, _) = SyscallFaults.run(under: folder, failing: [.init(kind, call: call + 1, errno: EIO)]) {
                        try saveCheckpoint(next, filename: out, format: Self.format)
                    }
                    let what = "EIO at \(kind) \(call + 1)"
                    let names = try folderContents(out)
                    #expect(!names.contains { $0.hasPrefix(".") }, "\(what) left a temporary: \(names)")
                    let loaded: [StateKey: StateValue]?
                    do {
                        let model = try loadCheckpoint(out).model
                        loaded = Dictionary(uniqueKeysWithValues: model.map { ($0.key, $0.value) })
                    } catch let error as CheckpointError where error.code == .notFound {
                        loaded = nil
                        #expect(scenario.collides, "\(what): the earlier checkpoint is gone though its shards were not in the way")
                        #expect(!names.contains(HuggingFaceSharded.indexName), "\(what): \(error)")
                    }
                    let previousModel = Dictionary(uniqueKeysWithValues: previous.model.map { ($0.key, $0.value) })
                    let nextModel = Dictionary(uniqueKeysWithValues: next.model.map { ($0.key, $0.value) })
                    switch result {
                    case .success:
                        #expect(loaded == nextModel, "\(what): the save succeeded but the folder does not hold it")
                    case .failure(let error):
                        failures += 1
                        #expect(error is CheckpointError, "\(what): \(error)")
                        if loaded == nextModel {
                            // Only when the index was renamed into place and its folder's flush failed.
                            #expect("\(error)".contains("renamed into place"), "\(what): \(error)")
                        } else if loaded != nil {
                            #expect(loaded == previousModel, "\(what): the folder holds neither checkpoint")
                        }
                    }
                }
            }
            #expect(failures > 10, "too few calls failed the save to prove anything")
        }
    }
}
