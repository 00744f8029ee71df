import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// CheckpointSaver in sharded mode on several ranks (threads of this process): retention
/// and pointers of manifests and shards, autoresume on every rank, and the fallback when a
/// shard is damaged or a rank dies mid-save.
@Suite struct ShardedSaverTests {
    /// The whole state at `batch`: tensors whose values depend on the batch.
    static func fullState(batch: Int) -> TrainingState {
        var state = ShardedCheckpointTests.shardableState()
        state.runName = "sharded-run"
        state.timestamp.batch = batch
        state.model["step"] = .tensor(try! Tensor(shape: [5], scalars: (0..<5).map { Float(batch * 10 + $0) }))
        return state
    }

    /// `rank`'s part of the state at `batch`, and what that part is.
    static func part(batch: Int, rank: Int, worldSize: Int) throws -> (TrainingState, Sharding) {
        let (tree, sharding) = try ShardPlan.splitFirstDimension.apply(to: fullState(batch: batch).tree, rank: rank, worldSize: worldSize)
        return (try TrainingState(tree: tree), sharding)
    }

    static func options(_ folder: String, group: any ProcessGroup, sharding: Sharding, keep: Int = -1) -> CheckpointSaver.Options {
        CheckpointSaver.Options(
            folder: folder, filename: "ba{batch}-rank{rank}", saveInterval: "2ba", checkpointsToKeep: keep,
            saveOnTermination: false, sharding: sharding, processGroup: group)
    }

    /// Trains `batches` batches on `worldSize` ranks with a sharded saver.
    static func train(_ folder: String, worldSize: Int, batches: Int, keep: Int = -1, asynchronous: Bool = false) throws {
        for result in ThreadWorld.run(size: worldSize, { group in
            let sharding = try part(batch: 0, rank: group.rank, worldSize: worldSize).1
            var options = options(folder, group: group, sharding: sharding, keep: keep)
            options.asynchronous = asynchronous
            let saver = try CheckpointSaver(options: options)
            try saver.fitStart(try part(batch: 0, rank: group.rank, worldSize: worldSize).0)
            for batch in 1...batches {
                try saver.batchEnd(try part(batch: batch, rank: group.rank, worldSize: worldSize).0)
            }
            try saver.fitEnd(try part(batch: batches, rank: group.rank, worldSize: worldSize).0)
        }) {
            try result.get()
        }
    }

    /// Autoresumes on `worldSize` ranks; returns each rank's resumed batch and whether its
    /// state is exactly its part at that batch.
    static func autoresume(_ folder: String, worldSize: Int) throws -> [(batch: Int?, exact: Bool)] {
        try ThreadWorld.run(size: worldSize) { group in
            let (fresh, sharding) = try part(batch: 0, rank: group.rank, worldSize: worldSize)
            var state = fresh
            let saver = try CheckpointSaver(options: options(folder, group: group, sharding: sharding))
            guard try saver.autoresume(into: &state) != nil else { return (nil, false) }
            let batch = state.timestamp.batch
            return (batch, try state.tree == part(batch: batch, rank: group.rank, worldSize: worldSize).0.tree)
        }.map { try $0.get() }
    }

    @Test func keepsManifestsAndShardsTogetherAndResumesEveryRank() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, worldSize: 3, batches: 7, keep: 2)
            let names = try folderContents(folder).filter { !$0.hasPrefix(".") && !$0.hasPrefix("latest") }.sorted()
            #expect(names == [
                "ba6-rank0.tar", "ba6-rank0.tar.manifest.json", "ba6-rank1.tar", "ba6-rank2.tar",
                "ba7-rank0.tar", "ba7-rank0.tar.manifest.json", "ba7-rank1.tar", "ba7-rank2.tar",
            ])
            #expect(LatestPointer.target(of: folder + "/latest-rank0") == folder + "/ba7-rank0.tar.manifest.json")
            #expect(LatestPointer.target(of: folder + "/latest-rank2") == folder + "/ba7-rank2.tar")

            let resumed = try Self.autoresume(folder, worldSize: 3)
            #expect(resumed.map(\.batch) == [7, 7, 7] && resumed.allSatisfy(\.exact))

            // Another world size cannot get back what each rank saved.
            for result in ThreadWorld.run(size: 2, { group in
                var state = try Self.part(batch: 0, rank: group.rank, worldSize: 2).0
                let saver = try CheckpointSaver(options: Self.options(folder, group: group, sharding: Sharding()))
                return try saver.autoresume(into: &state)
            }) {
                #expect(throws: CheckpointError.self) { try result.get() }
            }
        }
    }

    @Test func asynchronousShardedSavesCommitToo() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, worldSize: 2, batches: 4, asynchronous: true)
            let manifests = try folderContents(folder).filter { $0.hasSuffix(ShardManifest.suffix) }.sorted()
            #expect(manifests == ["ba2-rank0.tar.manifest.json", "ba4-rank0.tar.manifest.json"])
            #expect(try Self.autoresume(folder, worldSize: 2).map(\.batch) == [4, 4])
        }
    }

    @Test func aDamagedShardMakesEveryRankFallBackTogether() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, worldSize: 3, batches: 6)
            // Only rank 2 reads this shard; all ranks must still agree on batch 4.
            let shard = folder + "/ba6-rank2.tar"
            var bytes = try readBytes(shard)
            bytes[bytes.count - 2048] ^= 0xFF
            try writeBytes(bytes, to: shard)
            let resumed = try Self.autoresume(folder, worldSize: 3)
            #expect(resumed.map(\.batch) == [4, 4, 4] && resumed.allSatisfy(\.exact))
            try FileManager.default.removeItem(atPath: shard)  // leave no damaged file for the folder's cross-check
        }
    }

    @Test func aRankThatDiesMidSaveLeavesThePreviousCheckpointForAutoresume() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, worldSize: 3, batches: 2)
            let start = ContinuousClock.now
            let results = ThreadWorld.run(size: 3, timeout: .seconds(4)) { group in
                // Autoresume takes three collectives (candidates, outcome, retention); the save's
                // second is the all-gather after writing.
                let dying: any ProcessGroup = group.rank == 2 ? FailingCollective(group, number: 5) { () throws(CheckpointError) in throw CheckpointError(.io, "killed") } : group
                let sharding = try Self.part(batch: 0, rank: group.rank, worldSize: 3).1
                let saver = try CheckpointSaver(options: Self.options(folder, group: dying, sharding: sharding))
                var state = try Self.part(batch: 0, rank: group.rank, worldSize: 3).0
                try saver.autoresume(into: &state)
                try saver.batchEnd(try Self.part(batch: 3, rank: group.rank, worldSize: 3).0)
                try saver.batchEnd(try Self.part(batch: 4, rank: group.rank, worldSize: 3).0)
            }
            #expect(ContinuousClock.now - start < .seconds(30))
            for (rank, result) in results.enumerated() {
                guard case .failure(let error as CheckpointError) = result else {
                    Issue.record("rank \(rank) should have failed")
                    continue
                }
                #expect(rank == 2 || (error.code == .distributed && error.message.contains("timed out")), "\(error)")
            }
            #expect(!fileExists(folder + "/ba4-rank0.tar.manifest.json"))
            #expect(fileExists(folder + "/ba4-rank0.tar"), "survivors' shards of the failed save stay, uncommitted")
            #expect(try Self.autoresume(folder, worldSize: 3).map(\.batch) == [2, 2, 2])

            // Training goes on from batch 2 and saves batch 4 again over the uncommitted shards.
            for result in ThreadWorld.run(size: 3, { group in
                let (fresh, sharding) = try Self.part(batch: 0, rank: group.rank, worldSize: 3)
                var state = fresh
                let saver = try CheckpointSaver(options: Self.options(folder, group: group, sharding: sharding))
                try saver.autoresume(into: &state)
                for batch in 3...4 { try saver.batchEnd(try Self.part(batch: batch, rank: group.rank, worldSize: 3).0) }
            }) {
                try result.get()
            }
            let after = try Self.autoresume(folder, worldSize: 3)
            #expect(after.map(\.batch) == [4, 4, 4] && after.allSatisfy(\.exact))
        }
    }

    /// A folder template that names the rank puts rank 0's manifest in rank 0's folder and the
    /// other shards in theirs: saves, autoresume and the existence check agree on every rank.
    @Test func perRankFoldersWork() throws {
        try withTemporaryFolder { base in
            let folder = base + "/rank{rank}"
            try Self.train(folder, worldSize: 3, batches: 4)
            let manifest = try ShardManifest.read(base + "/rank0/ba4-rank0.tar.manifest.json")
            #expect(manifest.shards.map(\.path) == ["ba4-rank0.tar", "../rank1/ba4-rank1.tar", "../rank2/ba4-rank2.tar"])
            let resumed = try Self.autoresume(folder, worldSize: 3)
            #expect(resumed.map(\.batch) == [4, 4, 4] && resumed.allSatisfy(\.exact))
            // Saving batch 4 again without overwrite is refused on every rank alike (no rank waits).
            let start = ContinuousClock.now
            for result in ThreadWorld.run(size: 3, timeout: .seconds(30), { group in
                let (state, sharding) = try Self.part(batch: 4, rank: group.rank, worldSize: 3)
                let saver = try CheckpointSaver(options: Self.options(folder, group: group, sharding: sharding))
                var resumedState = try Self.part(batch: 0, rank: group.rank, worldSize: 3).0
                try saver.autoresume(into: &resumedState)
                try saver.fitEnd(state)  // batch 4 again: it was just resumed, so no save
                var later = state
                later.timestamp.batch = 5
                try saver.fitEnd(later)
            }) {
                try result.get()
            }
            #expect(ContinuousClock.now - start < .seconds(20))
            #expect(FileManager.default.fileExists(atPath: base + "/rank0/ba5-rank0.tar.manifest.json"))
        }
    }

    @Test func shardedOptionsAreCheckedUpFront() {
        expectCheckpointError(.invalidTemplate, messageContains: ["{rank}"]) {
            _ = try CheckpointSaver(options: .init(filename: "ba{batch}", sharding: Sharding()))
        }
        expectCheckpointError(.invalidArgument, messageContains: ["weights-only"]) {
            _ = try CheckpointSaver(options: .init(weightsOnly: true, sharding: Sharding()))
        }
    }
}
