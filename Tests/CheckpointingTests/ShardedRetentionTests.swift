import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Retention of sharded checkpoints after kills, on several ranks (threads of this process):
/// rank 0 adopts the manifests its ledger lost and prunes, and every rank prunes its shards of
/// pruned checkpoints and of saves that were never committed, never another run's.
@Suite struct ShardedRetentionTests {
    /// Saves a sharded checkpoint of `run` at `batch` on three ranks, outside any saver (what
    /// a saver killed before updating its ledger leaves).
    static func saveDirectly(_ folder: String, batch: Int, runName: String = "sharded-run") throws {
        for result in ThreadWorld.run(size: 3, { group in
            var (state, sharding) = try ShardedSaverTests.part(batch: batch, rank: group.rank, worldSize: 3)
            state.runName = runName
            _ = try saveCheckpoint(state, filename: folder + "/ba{batch}-rank{rank}", sharding: sharding, processGroup: group)
        }) {
            try result.get()
        }
    }

    @Test func killLeftoversArePrunedOnEveryRank() throws {
        try withTemporaryFolder { folder in
            try ShardedSaverTests.train(folder, worldSize: 3, batches: 6, keep: 2)
            // Committed, never recorded: adopted as the newest.
            try Self.saveDirectly(folder, batch: 8)
            // Pruned by rank 0 (manifest and shard gone), the other ranks killed before theirs.
            try Self.saveDirectly(folder, batch: 2)
            try FileManager.default.removeItem(atPath: folder + "/ba2-rank0.tar.manifest.json")
            try FileManager.default.removeItem(atPath: folder + "/ba2-rank0.tar")
            // Written, never committed.
            try Self.saveDirectly(folder, batch: 10)
            try FileManager.default.removeItem(atPath: folder + "/ba10-rank0.tar.manifest.json")
            // Another run's, newer: neither resumed nor touched.
            try Self.saveDirectly(folder, batch: 12, runName: "other-run")

            let resumed = try ThreadWorld.run(size: 3) { group in
                var (state, sharding) = try ShardedSaverTests.part(batch: 0, rank: group.rank, worldSize: 3)
                let options = ShardedSaverTests.options(folder, group: group, sharding: sharding, keep: 2)
                _ = try CheckpointSaver(options: options).autoresume(into: &state)
                return (state.timestamp.batch, try state.tree == ShardedSaverTests.part(batch: 8, rank: group.rank, worldSize: 3).0.tree)
            }.map { try $0.get() }
            #expect(resumed.map(\.0) == [8, 8, 8] && resumed.allSatisfy(\.1))
            let names = try folderContents(folder).filter { !$0.hasPrefix(".") && !$0.hasPrefix("latest") }.sorted()
            #expect(names == [
                "ba12-rank0.tar", "ba12-rank0.tar.manifest.json", "ba12-rank1.tar", "ba12-rank2.tar",
                "ba6-rank0.tar", "ba6-rank0.tar.manifest.json", "ba6-rank1.tar", "ba6-rank2.tar",
                "ba8-rank0.tar", "ba8-rank0.tar.manifest.json", "ba8-rank1.tar", "ba8-rank2.tar",
            ])
            let ledgers = try (0..<3).map { try RetentionLedger.load(from: RetentionLedger.path(folder: folder, rank: $0)).checkpoints }
            #expect(ledgers == [
                ["ba6-rank0.tar.manifest.json", "ba8-rank0.tar.manifest.json"], ["ba6-rank1.tar", "ba8-rank1.tar"],
                ["ba6-rank2.tar", "ba8-rank2.tar"],
            ])
            #expect(LatestPointer.target(of: folder + "/latest-rank0") == folder + "/ba8-rank0.tar.manifest.json")
            #expect(LatestPointer.target(of: folder + "/latest-rank1") == folder + "/ba8-rank1.tar")
        }
    }
}
