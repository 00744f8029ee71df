import CheckpointingTestSupport
import Foundation
import Synchronization
import Testing

@testable import Checkpointing

/// The DCP folders torch 2.7 wrote (`Tests/Fixtures/sharded/dcp`), read by this library: every
/// tensor bit for bit against `sharded/expected.json`, the tree rebuilt from `planner_data`,
/// and the two-rank checkpoint resharded onto 1, 2 and 3 ranks.
@Suite struct DCPFixtureTests {
    /// Every tensor's dtype, shape and SHA-256, and every value, of the checkpoint read whole.
    private func expectMatchesFixture(_ name: String, _ tree: StateValue, checkpoint: DistributedCheckpoint) throws {
        let expected = try DCPFixtures.expected(name)
        #expect(checkpoint.tensors.count == expected.tensors.count, "\(name): tensors")
        for entry in checkpoint.tensors {
            // expected.json names optimizer state without its `state` level (optim.<param>.exp_avg).
            let named = expected.tensors[entry.fqn] ?? expected.tensors[entry.fqn.replacingOccurrences(of: "optim.state.", with: "optim.")]
            let want = try #require(named, "\(name): \(entry.fqn) is not in expected.json")
            let tensor = try #require(tree[path: entry.path]?.tensorValue, "\(name): no tensor at \(entry.path)")
            #expect(tensor.dtype.rawValue == want.dtype && tensor.shape == want.shape, "\(name): \(entry.fqn)")
            #expect(tensor.withUnsafeBytes { sha256Hex($0) } == want.sha256, "\(name): bytes of \(entry.fqn)")
        }
        for (fqn, value) in expected.values {
            let node = try #require(tree[path: fqn], "\(name): no value \(fqn)")
            switch value {
            case let text as String: #expect(node == .string(text), "\(name): \(fqn)")
            case let number as NSNumber where fqn == "epoch_fraction": #expect(node == .float(number.doubleValue), "\(name): \(fqn)")
            case let number as NSNumber: #expect(node == .int(number.intValue), "\(name): \(fqn)")
            default: Issue.record("\(name): unexpected value \(value) for \(fqn)")
            }
        }
    }

    @Test(arguments: ["single", "two-ranks"])
    func everyTensorMatchesExpectedBitForBit(name: String) throws {
        let file = try CheckpointFile.open(DCPFixtures.path(name))
        #expect(file.kind == .distributedCheckpoint && file.formatName == "dcp")
        let checkpoint = try #require(file.distributedCheckpoint)
        try expectMatchesFixture("dcp/" + name, file.tree, checkpoint: checkpoint)
        try file.verify()
        // The same through the load path, and through the .metadata's own path.
        let loaded = try loadCheckpointTree(DCPFixtures.path(name) + "/.metadata", shardPlan: .whole)
        #expect(loaded.path == DCPFixtures.path(name))
        try expectMatchesFixture("dcp/" + name, loaded.tree, checkpoint: checkpoint)
        #expect(loaded.tree == file.tree)
    }

    @Test func treeIsRebuiltFromPlannerDataNotBySplittingNames() throws {
        let file = try CheckpointFile.open(DCPFixtures.path("single"))
        let root = try #require(file.tree.dictValue)
        #expect(Set(root.keys) == ["model", "optim", "step", "run_name", "epoch_fraction"])
        // `model.embed.weight` was saved as model → "embed.weight", a key with a dot.
        let model = try #require(root["model"]?.dictValue)
        #expect(model.keys.contains("embed.weight") && model.keys.contains("block.0.attn.weight"))
        #expect(model["embed"] == nil && model["block"] == nil)
        // Lists come back as lists: optim.param_groups.0.lr was ("optim", "param_groups", 0, "lr").
        let groups = try #require(root["optim"]?.dictValue?["param_groups"])
        guard case .list(let list) = groups else {
            Issue.record("param_groups is a \(groups.kindName), not a list")
            return
        }
        #expect(list.count == 1)
        #expect(list[0].dictValue?["lr"] == .float(0.001))
        #expect(list[0].dictValue?["betas"] == .tuple([.float(0.9), .float(0.999)]))
        #expect(list[0].dictValue?["params"]?.elements?.count == 5)
        #expect(file.tree[path: "optim/state/embed.weight/step"]?.tensorValue?.shape == [])
    }

    @Test func chunksAreBoxesOfTheGlobalTensors() throws {
        let checkpoint = try DistributedCheckpoint.open(DCPFixtures.path("two-ranks"))
        #expect(checkpoint.files.map(\.name) == ["__0_0.distcp", "__1_0.distcp"])
        #expect(checkpoint.valueCount == 2 && checkpoint.tensors.count == 6)
        let head = try #require(checkpoint.tensors.first { $0.fqn == "model.head.weight" })
        #expect(head.path == "model/head.weight" && head.shape == [7, 24])
        #expect(head.chunks.map(\.box) == [.rows(0..<4, of: [7, 24]), .rows(4..<7, of: [7, 24])], "uneven rows")
        #expect(head.chunks.map(\.file) == ["__0_0.distcp", "__1_0.distcp"])
        // One chunk per rank: a tensor assembled from two is built when first used.
        let file = try CheckpointFile.open(DCPFixtures.path("two-ranks"))
        let assembled = try #require(file.tree[path: "model/head.weight"]?.tensorValue)
        #expect(assembled.storage == .owned && assembled.byteCount == 7 * 24 * 4)
    }

    /// A tensor assembled when first used is assembled once, whichever threads use it first
    /// and however many at once.
    @Test func aDeferredTensorIsMadeOnceForAllThreads() throws {
        let file = try CheckpointFile.open(DCPFixtures.path("two-ranks"))
        let tensors = file.tree.tensors.map(\.tensor)
        let seen = Mutex([[String]](repeating: [], count: tensors.count))
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for (index, tensor) in tensors.enumerated() {
                let digest = tensor.withUnsafeBytes { "\(UInt(bitPattern: $0.baseAddress)):\(sha256Hex($0))" }
                seen.withLock { $0[index].append(digest) }
            }
        }
        for (index, digests) in seen.withLock({ $0 }).enumerated() {
            #expect(Set(digests).count == 1, "tensor \(index): one buffer, one content")
        }
    }

    /// The two-rank checkpoint loads on 1, 2 and 3 ranks: each rank's box equals those rows of
    /// the tensor read whole (itself checked against expected.json above).
    @Test(arguments: [1, 2, 3])
    func twoRankCheckpointReshardsOntoAnyNumberOfRanks(worldSize: Int) throws {
        let whole = try CheckpointFile.open(DCPFixtures.path("two-ranks")).tree
        let results = ThreadWorld.run(size: worldSize) { group in
            try loadCheckpointTree(DCPFixtures.path("two-ranks"), processGroup: group)
        }
        for (rank, result) in results.enumerated() {
            let loaded = try result.get()
            let expected = try ShardPlan.splitFirstDimension.apply(to: whole, rank: rank, worldSize: worldSize)
            #expect(loaded.tree == expected.tree, "rank \(rank) of \(worldSize)")
            #expect(loaded.sharding.slices == expected.sharding.slices, "rank \(rank) of \(worldSize)")
            #expect(loaded.tree[path: "step"] == .int(12) && loaded.tree[path: "run_name"] == "dcp-fixture")
        }
    }

    /// A rank reads only the chunks its box overlaps: with rank 1's chunk of one tensor
    /// damaged, rank 0 still loads (verifying what it reads) and rank 1 fails on that chunk.
    @Test func aRankReadsOnlyTheChunksItsBoxOverlaps() throws {
        try withTemporaryFolder { folder in
            let copy = try DCPFixtures.copy("two-ranks", into: folder)
            let checkpoint = try DistributedCheckpoint.open(copy)
            let embed = try #require(checkpoint.tensors.first { $0.fqn == "model.embed.weight" })
            let second = embed.chunks[1]
            // The chunk's data record ends just before its zip trailer; flip a byte in the middle.
            try editFile(copy + "/" + second.file) { bytes in bytes[second.offset + second.length / 2] ^= 0x40 }
            let results = ThreadWorld.run(size: 2) { group in try loadCheckpointTree(copy, processGroup: group) }
            let rank0 = try results[0].get()
            #expect(rank0.tree[path: "model/embed.weight"]?.tensorValue?.shape == [15, 24])
            #expect(throws: CheckpointError.self) { try results[1].get() }
            if case .failure(let error as CheckpointError) = results[1] {
                #expect(error.code == .checksumMismatch, "\(error)")
                #expect(error.message.contains("model.embed.weight") && error.path?.hasSuffix(second.file) == true, "\(error)")
            }
        }
    }

    @Test func asSavedGivesEachRankItsOwnChunksOnlyOnAsManyRanks() throws {
        let whole = try CheckpointFile.open(DCPFixtures.path("two-ranks")).tree
        let results = ThreadWorld.run(size: 2) { group in
            try loadCheckpointTree(DCPFixtures.path("two-ranks"), shardPlan: .asSaved, processGroup: group)
        }
        for (rank, result) in results.enumerated() {
            let loaded = try result.get()
            #expect(loaded.tree == (try ShardPlan.splitFirstDimension.apply(to: whole, rank: rank, worldSize: 2).tree))
        }
        let three = ThreadWorld.run(size: 3) { group in
            try loadCheckpointTree(DCPFixtures.path("two-ranks"), shardPlan: .asSaved, processGroup: group)
        }
        for result in three {
            #expect(throws: CheckpointError.self) { try result.get() }
        }
    }

    @Test func loadCheckpointReadsAComposerStyleTreeFromDCP() throws {
        try withTemporaryFolder { folder in
            let state = dcpTestState()
            try saveCheckpoint(state, filename: folder + "/ep{epoch}", format: .distributedCheckpoint)
            var resumed = TrainingState(model: state.model)
            let result = try loadCheckpoint(folder + "/ep1", into: &resumed)
            #expect(result.path == folder + "/ep1")
            #expect(resumed.model == state.model && resumed.timestamp == state.timestamp && resumed.runName == state.runName)
            #expect(resumed.rng == state.rng)
            #expect(.dict(resumed.optimizers) == dcpRoundTripped(.dict(state.optimizers)), "integer keys come back as strings")
        }
    }
}
