import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Sharded saves and resharding loads, with the ranks as threads of this
/// process (``ThreadWorld``); the MPI tests run the same code across real processes.
@Suite struct ShardedCheckpointTests {
    /// Composer's layout with tensors whose first dimension splits unevenly 4 ways, some too
    /// small to split, and integer keys in the optimizer state.
    static func shardableState() -> TrainingState {
        var state = composerLikeState(seed: 11)
        var generator = RandomTree(seed: 12)
        state.model["emb.weight"] = .tensor(generator.tensor(dtype: .float16, shape: [10, 6]))
        state.model["head.weight"] = .tensor(generator.tensor(dtype: .bfloat16, shape: [7, 3, 2]))
        state.model["empty"] = .tensor(generator.tensor(dtype: .float32, shape: [0, 5]))
        return state
    }

    /// Saves `tree` sharded `worldSize` ways under `ShardPlan.splitFirstDimension`.
    static func saveSplit(
        _ state: TrainingState, worldSize: Int, filename: String
    ) throws -> [[String]] {
        let tree = state.tree
        return try ThreadWorld.run(size: worldSize) { group in
            let (part, sharding) = try ShardPlan.splitFirstDimension.apply(to: tree, rank: group.rank, worldSize: worldSize)
            return try saveCheckpoint(
                tree: part, filename: filename, runName: state.runName, timestamp: state.timestamp, sharding: sharding,
                processGroup: group)
        }.map { try $0.get() }
    }

    @Test func savedOnFourRanksLoadsBitIdenticallyOnOneToFourRanks() throws {
        try withTemporaryFolder { folder in
            let state = Self.shardableState()
            let paths = try Self.saveSplit(state, worldSize: 4, filename: folder + "/ep{epoch}-ba{batch}-rank{rank}")
            let expectedPaths = (0..<4).map { "\(folder)/ep1-ba4-rank\($0).tar" }
            #expect(paths == Array(repeating: expectedPaths, count: 4), "every rank gets every rank's path")
            #expect(fileExists(expectedPaths[0] + ShardManifest.suffix))
            let manifest = try ShardManifest.read(expectedPaths[0] + ShardManifest.suffix)
            #expect(manifest.worldSize == 4 && manifest.shards.map(\.path) == expectedPaths.map { ($0 as NSString).lastPathComponent })
            let emb = try #require(manifest.tensors.first { $0.path == "state/model/emb.weight" })
            #expect(emb.shape == [10, 6] && emb.pieces.map(\.shape) == [[3, 6], [3, 6], [2, 6], [2, 6]])
            #expect(manifest.tensors.first { $0.path == "state/model/fc2.weight" }?.pieces.map(\.rank) == [0], "3 rows cannot split 4 ways")

            for worldSize in 1...4 {
                let loaded = try ThreadWorld.run(size: worldSize) { group in
                    try loadCheckpoint(folder, processGroup: group)
                }.map { try $0.get() }
                for (rank, got) in loaded.enumerated() {
                    let expected = try ShardPlan.splitFirstDimension.apply(to: state.tree, rank: rank, worldSize: worldSize).tree
                    #expect(try got.tree == TrainingState(tree: expected).tree, "rank \(rank) of \(worldSize)")
                }
                if worldSize == 1 { #expect(loaded[0].tree == state.tree, "one rank gets the original back, bit for bit") }
                if worldSize == 4 {
                    #expect(loaded[1].model["emb.weight"]?.tensorValue?.storage == .mapped, "a box that is one saved piece is not copied")
                }
            }
            // Every rank may also ask for everything.
            for got in ThreadWorld.run(size: 3, { group in try loadCheckpoint(folder, shardPlan: .whole, processGroup: group) }) {
                #expect(try got.get().tree == state.tree)
            }
        }
    }

    @Test func columnSlicesReplicasAndTensorsRankZeroLacksReassemble() throws {
        var generator = RandomTree(seed: 3)
        let full = generator.tensor(dtype: .float32, shape: [4, 6])
        let shared = generator.tensor(dtype: .int64, shape: [5])
        let onlyOnOne = generator.tensor(dtype: .uint8, shape: [9])
        let original: StateValue = [
            "state": ["model": ["w": .tensor(full), "shared": .tensor(shared), "deep": [7: ["only": .tensor(onlyOnOne)]]], "run_name": "cols"],
        ]
        try withTemporaryFolder { folder in
            let results = ThreadWorld.run(size: 2) { group in
                let columns = TensorSlice(globalShape: [4, 6], offset: [0, 3 * group.rank], shape: [4, 3])
                var model: StateDict = ["w": .tensor(try full.cut(to: columns)), "shared": .tensor(shared)]
                if group.rank == 1 { model["deep"] = [7: ["only": .tensor(onlyOnOne)]] }
                let tree: StateValue = ["state": ["model": .dict(model), "run_name": "cols"]]
                return try saveCheckpoint(
                    tree: tree, filename: folder + "/cols-rank{rank}", sharding: Sharding(slices: ["state/model/w": columns]),
                    processGroup: group)
            }
            for result in results { _ = try result.get() }

            let whole = try loadCheckpoint(folder)
            #expect(try whole.tree == TrainingState(tree: original).tree)
            #expect(whole.model["deep"]?.dictValue?[7] != nil, "the integer key stays an integer")

            // Three ranks, each wanting two columns: rank 1's box straddles both saved pieces.
            let thirds = ShardPlan { _, shape, rank, _ in
                shape.count == 2 ? TensorSlice(globalShape: shape, offset: [0, 2 * rank], shape: [4, 2]) : .whole(shape)
            }
            let wrongShape = ShardPlan { _, shape, _, _ in .whole(shape + [1]) }
            expectCheckpointError(.invalidArgument, messageContains: ["global shape"]) {
                _ = try loadCheckpoint(folder, shardPlan: wrongShape)
            }
            let outside = ShardPlan { _, shape, _, _ in TensorSlice(globalShape: shape, offset: shape.map { $0 }, shape: shape) }
            expectCheckpointError(.invalidArgument, messageContains: ["outside"]) {
                _ = try loadCheckpoint(folder, shardPlan: outside)
            }
            let loaded = ThreadWorld.run(size: 3) { group in try loadCheckpoint(folder, shardPlan: thirds, processGroup: group) }
            for (rank, result) in loaded.enumerated() {
                let expected = try full.cut(to: TensorSlice(globalShape: [4, 6], offset: [0, 2 * rank], shape: [4, 2]))
                let got = try result.get()
                #expect(got.model["w"]?.tensorValue == expected, "rank \(rank)")
                #expect(got.model["shared"]?.tensorValue == shared)
            }
        }
    }

    @Test func compressedTorchShardsRoundTrip() throws {
        try withTemporaryFolder { folder in
            let state = Self.shardableState()
            let paths = try Self.saveSplit(state, worldSize: 2, filename: folder + "/ep{epoch}-rank{rank}.pt.zst")
            #expect(paths[0] == ["\(folder)/ep1-rank0.pt.tar.zst", "\(folder)/ep1-rank1.pt.tar.zst"])
            let file = try CheckpointFile.open(paths[0][1])
            #expect(file.layers == [.compressed(.zstd), .tar(member: "composer_states.pt")])
            // The torch format keeps durations to the microsecond: compare with an unsharded .pt.
            let plain = try saveCheckpoint(state, filename: folder + "/plain.pt")[0]
            #expect(try loadCheckpoint(paths[0][0] + ShardManifest.suffix).tree == loadCheckpoint(plain).tree)
        }
    }

    @Test func shardNamesGetATarBeforeAnyCompression() {
        #expect(ShardedSave.shardPath("a/rank0") == "a/rank0.tar")
        #expect(ShardedSave.shardPath("rank0.pt") == "rank0.pt.tar")
        #expect(ShardedSave.shardPath("rank0.safetensors.zst") == "rank0.safetensors.tar.zst")
        #expect(ShardedSave.shardPath("rank0.tar.gz") == "rank0.tar.gz")
        #expect(ShardedSave.shardPath("rank0.tgz") == "rank0.tgz")
    }

    @Test func badInputsAreRefusedBeforeAnythingIsWritten() throws {
        try withTemporaryFolder { folder in
            let state = Self.shardableState()
            expectCheckpointError(.invalidTemplate, messageContains: ["{rank}"]) {
                try saveCheckpoint(state, filename: folder + "/ep{epoch}", sharding: Sharding())
            }
            expectCheckpointError(.invalidArgument, messageContains: ["weights-only"]) {
                try saveCheckpoint(state, filename: folder + "/ep{epoch}-rank{rank}", weightsOnly: true, sharding: Sharding())
            }
            // One rank's slice does not fit its tensor: no rank writes.
            let results = ThreadWorld.run(size: 3) { group in
                let slices = group.rank == 2 ? ["state/model/fc1.bias": TensorSlice(globalShape: [8], offset: [4], shape: [5])] : [:]
                return try saveCheckpoint(
                    state, filename: folder + "/ep{epoch}-rank{rank}", sharding: Sharding(slices: slices), processGroup: group)
            }
            for (rank, result) in results.enumerated() {
                #expect(throws: CheckpointError.self) { try result.get() }
                if case .failure(let error as CheckpointError) = result {
                    // Rank 2's own error on every rank; the others learn it was rank 2's.
                    #expect(error.code == .invalidArgument && error.message.contains("fc1.bias"), "\(error)")
                    #expect(error.rank == (rank == 2 ? nil : 2), "\(error)")
                    #expect(rank == 2 || error.message.contains("refused before any rank wrote"), "\(error)")
                }
            }
            let contents = try folderContents(folder)
            #expect(contents.isEmpty)
        }
    }

    @Test func piecesThatOverlapAreNotCommitted() throws {
        try withTemporaryFolder { folder in
            var generator = RandomTree(seed: 5)
            let tensor = generator.tensor(dtype: .float32, shape: [6])
            let results = ThreadWorld.run(size: 2) { group in
                // Rows 0..<4 and 2..<6: every row is covered, but rows 2 and 3 twice.
                let box = TensorSlice(globalShape: [6], offset: [2 * group.rank], shape: [4])
                let tree: StateValue = ["state": ["model": ["w": .tensor(try tensor.cut(to: box))]]]
                return try saveCheckpoint(
                    tree: tree, filename: folder + "/x-rank{rank}", sharding: Sharding(slices: ["state/model/w": box]),
                    processGroup: group)
            }
            for (rank, result) in results.enumerated() {
                #expect(throws: CheckpointError.self) { try result.get() }
                if case .failure(let error as CheckpointError) = result {
                    // Rank 0's commit refused the manifest; the other rank gets rank 0's error.
                    #expect(error.code == .invalidArgument && error.message.contains("overlap"), "\(error)")
                    #expect(error.rank == (rank == 0 ? nil : 0), "\(error)")
                }
            }
            let contents = try folderContents(folder)
            #expect(contents.isEmpty, "no manifest, and the uncommitted shards are removed")
        }
    }

    /// A rank that dies after writing its shard: the others time out instead of hanging, no
    /// manifest is written, and the previous checkpoint is still the one a load finds.
    @Test func aRankThatDiesMidSaveLeavesThePreviousCheckpointInCharge() throws {
        try withTemporaryFolder { folder in
            let state = Self.shardableState()
            _ = try Self.saveSplit(state, worldSize: 3, filename: folder + "/ep{epoch}-ba{batch}-rank{rank}")
            var changed = state
            changed.timestamp.batch = 8
            let later = changed
            let tree = later.tree
            let start = ContinuousClock.now
            let results = ThreadWorld.run(size: 3, timeout: .seconds(4)) { group in
                let (part, sharding) = try ShardPlan.splitFirstDimension.apply(to: tree, rank: group.rank, worldSize: 3)
                let dying = group.rank == 1 ? FailingCollective(group, number: 2) { () throws(CheckpointError) in throw CheckpointError(.io, "killed") } : nil
                return try saveCheckpoint(
                    tree: part, filename: folder + "/ep{epoch}-ba{batch}-rank{rank}", timestamp: later.timestamp,
                    sharding: sharding, processGroup: dying ?? group)
            }
            #expect(ContinuousClock.now - start < .seconds(30))
            for (rank, result) in results.enumerated() {
                guard case .failure(let error as CheckpointError) = result else {
                    Issue.record("rank \(rank) should have failed: \(result)")
                    continue
                }
                #expect(rank == 1 ? error.message == "killed" : error.code == .distributed && error.message.contains("timed out"), "\(error)")
            }
            #expect(!fileExists(folder + "/ep1-ba8-rank0.tar" + ShardManifest.suffix))
            #expect(fileExists(folder + "/ep1-ba8-rank1.tar"), "the dead rank's shard was written")
            #expect(try ShardManifest.locate(folder) == folder + "/ep1-ba4-rank0.tar" + ShardManifest.suffix)
            #expect(try loadCheckpoint(folder).tree == state.tree)
        }
    }

    @Test func damagedMissingOrReplacedShardsAreClearErrors() throws {
        try withTemporaryFolder { folder in
            let state = Self.shardableState()
            _ = try Self.saveSplit(state, worldSize: 2, filename: folder + "/ep{epoch}-rank{rank}")
            let manifestPath = folder + "/ep1-rank0.tar" + ShardManifest.suffix
            let manifest = try ShardManifest.read(manifestPath)

            // One flipped byte in a tensor of rank 1's shard: the tensor is named.
            let shard1 = folder + "/ep1-rank1.tar"
            var bytes = try readBytes(shard1)
            let emb = try #require(CheckpointFile.open(shard1).tree[path: "state/model/emb.weight"]?.tensorValue)
            let needle = emb.bytes
            let at = try #require(bytes.firstRange(of: needle)).lowerBound
            bytes[at] ^= 0x40
            try writeBytes(bytes, to: shard1 + ".damaged")
            try FileManager.default.moveItem(atPath: shard1, toPath: shard1 + ".good")
            try FileManager.default.moveItem(atPath: shard1 + ".damaged", toPath: shard1)
            expectCheckpointError(.checksumMismatch, messageContains: ["emb.weight"]) { _ = try loadCheckpoint(folder) }
            _ = try loadCheckpoint(folder, verifyChecksums: false)  // the caller may opt out

            // Replaced by another file: the size no longer matches the manifest.
            try writeBytes(Array(bytes.dropLast(512)), to: shard1)
            expectCheckpointError(.checksumMismatch, messageContains: ["replaced"]) { _ = try loadCheckpoint(folder) }

            // Replaced by a shard of the same size from another save: the digest tells them apart.
            var other = state
            other.model["emb.weight"] = .tensor(try Tensor(dtype: .float16, shape: [10, 6], bytes: [UInt8](repeating: 7, count: 120)))
            _ = try Self.saveSplit(other, worldSize: 2, filename: folder + "/other/ep{epoch}-rank{rank}")
            try FileManager.default.removeItem(atPath: shard1)
            try FileManager.default.copyItem(atPath: folder + "/other/ep1-rank1.tar", toPath: shard1)
            #expect(try readBytes(shard1).count == bytes.count)
            expectCheckpointError(.checksumMismatch, messageContains: ["digest", "replaced"]) { _ = try loadCheckpoint(folder) }
            expectCheckpointError(.checksumMismatch, messageContains: ["digest"]) {
                try ShardManifest.read(manifestPath).verifyShards(manifestPath: manifestPath)
            }

            // Missing.
            try FileManager.default.removeItem(atPath: shard1)
            expectCheckpointError(.notFound, messageContains: ["rank 1"]) { _ = try loadCheckpoint(folder) }
            try FileManager.default.moveItem(atPath: shard1 + ".good", toPath: shard1)
            #expect(try loadCheckpoint(folder).tree == state.tree)

            // A manifest whose pieces leave a gap.
            var gap = manifest
            let index = try #require(gap.tensors.firstIndex { $0.path == "state/model/emb.weight" })
            gap.tensors[index].pieces.removeLast()
            try gap.write(to: manifestPath)
            expectCheckpointError(.malformed, messageContains: ["emb.weight", "cover"]) { _ = try loadCheckpoint(folder) }
            try manifest.write(to: manifestPath)

            // Two manifests in one folder are ambiguous; none is an unfinished save.
            try manifest.write(to: folder + "/other" + ShardManifest.suffix)
            expectCheckpointError(.invalidArgument, messageContains: ["2 sharded checkpoints"]) { _ = try loadCheckpoint(folder) }
            try FileManager.default.removeItem(atPath: folder + "/other" + ShardManifest.suffix)
            try FileManager.default.removeItem(atPath: manifestPath)
            expectCheckpointError(.notFound, messageContains: ["unfinished"]) { _ = try loadCheckpoint(folder) }
        }
    }

    @Test func sliceCopyMatchesElementByElementCopy() throws {
        var rng = SplitMix64(seed: 99)
        func random(_ bound: Int) -> Int { Int(rng.next() % UInt64(bound)) }
        for _ in 0..<300 {
            let dims = 1 + random(4)
            let global = (0..<dims).map { _ in 1 + random(5) }
            func box() -> TensorSlice {
                var offset: [Int] = []
                var shape: [Int] = []
                for size in global {
                    let start = random(size)
                    offset.append(start)
                    shape.append(1 + random(size - start))
                }
                return TensorSlice(globalShape: global, offset: offset, shape: shape)
            }
            let (source, destination) = (box(), box())
            guard let region = source.intersection(destination) else { continue }
            // Each element's value is its global linear index.
            func index(_ point: [Int]) -> Int32 { Int32(point.indices.reduce(0) { $0 * global[$1] + point[$1] }) }
            func points(_ box: TensorSlice) -> [[Int]] {
                box.shape.indices.reduce([[]]) { partial, dimension in
                    partial.flatMap { prefix in (0..<box.shape[dimension]).map { prefix + [box.offset[dimension] + $0] } }
                }
            }
            let sourceValues = points(source).map(index)
            var got = [Int32](repeating: -1, count: destination.elementCount)
            sourceValues.withUnsafeBytes { from in
                got.withUnsafeMutableBytes { to in
                    SliceCopy.copy(region, from: from, source: source, to: to, destination: destination, elementSize: 4)
                }
            }
            let expected = points(destination).map { point in
                zip(point, zip(region.offset, region.shape)).allSatisfy { $0 >= $1.0 && $0 < $1.0 + $1.1 } ? index(point) : -1
            }
            #expect(got == expected, "source \(source), destination \(destination)")
        }
    }
}
