import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Writing Hugging Face sharded folders: `huggingface_hub`'s size parser and splitting rule
/// (checked against `huggingface_hub` itself), what the folder holds, the commit (shards
/// atomically, the index last), replacing an earlier save, and the checks that find a damaged
/// or substituted shard. Every folder a test leaves is also read by Python's `safetensors`
/// (``PythonHuggingFace/crossCheck(folder:)``).
@Suite struct HFShardedWriteTests {
    // MARK: Sizes and the splitting rule

    @Test func sizesParseAsHuggingFaceHubParsesThem() throws {
        let common = ["40KB", "5GB", "500MB", "1.5GB", "4.35GB", "0.1KB", " 7 mb ", "2.5TB", "1kb", ".5GB", "123456789KB", "0.0015MB"]
        let script = """
            import json, sys
            from huggingface_hub.serialization._base import parse_size_to_int
            print(json.dumps([parse_size_to_int(size) for size in json.loads(sys.argv[1])]))
            """
        let output = try runPython(script, [String(decoding: try JSONSerialization.data(withJSONObject: common), as: UTF8.self)])
        let theirs = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [Any]).compactMap(jsonInt)
        #expect(theirs.count == common.count)
        for (text, expected) in zip(common, theirs) {
            #expect(try HuggingFaceSharded.parseSize(text) == expected, "\(text)")
        }
        // Beyond huggingface_hub: byte counts and binary units.
        #expect(try HuggingFaceSharded.parseSize("40000") == 40_000)
        #expect(try HuggingFaceSharded.parseSize("2GiB") == 2 << 30)
        #expect(try HuggingFaceSharded.parseSize("1.5 kib") == 1536)
        // Refused: no unit or number, signs, exponents, and sizes below one byte.
        for text in ["5G", "GB", "", "abc", "-1KB", "+1KB", "1e3KB", "0KB", "0", "0.0001KB", "1.2.3MB", "infGB", "99999999999TB"] {
            expectCheckpointError(.invalidArgument, messageContains: ["shard size"]) { _ = try HuggingFaceSharded.parseSize(text) }
        }
    }

    @Test func theSplittingRuleIsHuggingFaceHubs() throws {
        // The example in huggingface_hub's documentation, in GB, with a 10 GB limit.
        #expect(HuggingFaceSharded.split(sizes: [6, 6, 2, 6, 2, 2], maxShardSize: 10) == [[0], [1, 2], [3, 4, 5]])
        // A tensor over the limit gets its own shard at once; the shard being filled stays open.
        #expect(HuggingFaceSharded.split(sizes: [3, 20, 4, 5, 30], maxShardSize: 10) == [[1], [0, 2], [4], [3]])
        #expect(HuggingFaceSharded.split(sizes: [10, 0, 0, 1], maxShardSize: 10) == [[0, 1, 2], [3]])

        // Random cases against huggingface_hub's own function.
        var random = SplitMix64(seed: 0x5EED)
        var cases: [[String: Any]] = []
        for _ in 0..<300 {
            let count = 1 + Int(random.next() % 30)
            cases.append([
                "sizes": (0..<count).map { _ in Int(random.next() % 1000) }, "max": 1 + Int(random.next() % 1500),
            ])
        }
        let script = """
            import json, sys
            from huggingface_hub import split_state_dict_into_shards_factory
            out = []
            for case in json.loads(sys.argv[1]):
                state = {"t%d" % i: size for i, size in enumerate(case["sizes"])}
                split = split_state_dict_into_shards_factory(
                    state, get_storage_size=lambda size: size, filename_pattern="model{suffix}.safetensors", max_shard_size=case["max"])
                out.append([[int(name[1:]) for name in names] for names in split.filename_to_tensors.values()])
            print(json.dumps(out))
            """
        let output = try runPython(script, [String(decoding: try JSONSerialization.data(withJSONObject: cases), as: UTF8.self)])
        let theirs = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[[Any]]])
        #expect(theirs.count == cases.count)
        for (index, (split, theirSplit)) in zip(cases, theirs).enumerated() {
            let sizes = try #require(split["sizes"] as? [Int]), maximum = try #require(split["max"] as? Int)
            #expect(
                HuggingFaceSharded.split(sizes: sizes, maxShardSize: maximum) == theirSplit.map { $0.compactMap(jsonInt) },
                "case \(index): sizes \(sizes), max \(maximum)")
        }
    }

    @Test func shardNames() {
        #expect(HuggingFaceSharded.shardName(number: 2, of: 5) == "model-00002-of-00005.safetensors")
        #expect(HuggingFaceSharded.shardName(prefix: "x-y", number: 123_456, of: 123_456) == "x-y-123456-of-123456.safetensors")
        #expect(HuggingFaceSharded.shardPrefix(of: "x-y-00001-of-00002.safetensors") == "x-y")
        for name in ["model.safetensors", "model-1-of-2.safetensors", "model-00001-00002.safetensors", "-00001-of-00002.safetensors.bak"] {
            #expect(HuggingFaceSharded.shardPrefix(of: name) == nil, "\(name)")
        }
    }

    // MARK: What a save writes

    /// Shards of 40 KB: the same `weight_map`, shard files and tensors as huggingface_hub wrote.
    @Test(arguments: HFShardedFixtureTests.fixtures)
    func rewritingAFixtureGivesHuggingFacesWeightMap(fixture: String) throws {
        try withTemporaryFolder { folder in
            let source = try CheckpointFile.open(Fixtures.path("sharded/" + fixture))
            let paths = try saveCheckpoint(
                tree: source.tree, filename: folder + "/out", format: .huggingFaceSharded(maxShardSize: try HuggingFaceSharded.parseSize("40KB")))
            #expect(paths == [folder + "/out/model.safetensors.index.json"])
            #expect(try HFShardedFixtureTests.weightMap(paths[0]).elementsEqual(try HFShardedFixtureTests.weightMap(source.path)) { $0 == $1 })
            let written = try CheckpointFile.open(folder + "/out")
            #expect(written.tree == source.tree)
            let shards = try #require(written.huggingFaceShards)
            #expect(shards.hasChecksums && shards.isCommitRecorded)
            #expect(shards.statedTotalSize == source.huggingFaceShards?.statedTotalSize)
            #expect(try folderContents(folder + "/out") == (try folderContents(Fixtures.path("sharded/" + fixture))))
            try written.verify()
        }
    }

    @Test func aTrainingStateWritesItsModelByName() throws {
        try withTemporaryFolder { folder in
            var state = composerLikeState()
            state.model["encoder"] = .dict(["layers": .list([.dict(["weight": .tensor(try Tensor(shape: [2], scalars: [Float(1), 2]))])])])
            let paths = try saveCheckpoint(
                state, filename: folder + "/{run_name}-ep{epoch}/", format: .huggingFaceSharded(maxShardSize: 100))
            #expect(paths == [folder + "/fixture-run-ep1/model.safetensors.index.json"])
            let file = try CheckpointFile.open(paths[0])
            let names = try #require(file.tree.dictValue).keys.map(\.description)
            #expect(names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "bn.running_mean", "bn.num_batches_tracked", "encoder.layers.0.weight"])
            for (name, tensor) in file.tree.tensors where name != "encoder.layers.0.weight" {
                #expect(state.model[name]?.tensorValue == tensor, "\(name)")
            }
            // 100-byte shards: fc1.weight (128 bytes) over the limit alone; fc1.bias (32) and
            // fc2.weight (96) would pass it together; then fc2.bias (12) and the rest (48) fit.
            let shards = try #require(file.huggingFaceShards)
            #expect(shards.shards.map(\.tensorCount) == [1, 1, 1, 4])
            #expect(shards.shardOfTensor["fc1.weight"] == 0 && shards.shardOfTensor["fc1.bias"] == 1)

            // Loaded into a training state, the tensors are its model; nothing else is there.
            var target = TrainingState(model: state.model)
            target.model["encoder.layers.0.weight"] = StateValue.none
            target.model["encoder"] = nil
            try loadCheckpoint(paths[0], into: &target)
            #expect(target.model["fc2.weight"] == state.model["fc2.weight"])
            #expect(target.optimizers.isEmpty && target.timestamp == Timestamp())

            // Each shard's metadata: format pt, as transformers expects, and the checksums.
            let mapped = try MappedFile(path: shards.path(of: shards.shards[1]))
            let header = try withExtendedLifetime(mapped) { try SafetensorsHeader(parsing: mapped.bytes) }
            #expect(header.metadata["format"] == "pt")
            #expect(header.metadata["checksum_algorithm"] == "xxh3-64")
            #expect(header.metadata["checkpoint_format"] == nil && header.metadata["tree"] == nil)
        }
    }

    @Test func anIndexPathNamesTheShardsPrefix() throws {
        try withTemporaryFolder { folder in
            let state = composerLikeState()
            let path = try saveCheckpoint(
                state, filename: folder + "/export/weights.safetensors.index.json", format: .huggingFaceSharded(maxShardSize: 64))[0]
            #expect(path == folder + "/export/weights.safetensors.index.json")
            let names = try folderContents(folder + "/export")
            let shards = HuggingFaceSharded.split(sizes: state.model.map { $0.value.tensorValue?.byteCount ?? 0 }, maxShardSize: 64)
            #expect(shards.count > 1 && names.count == shards.count + 1 && names.last == "weights.safetensors.index.json")
            #expect(names.dropLast().allSatisfy { HuggingFaceSharded.shardPrefix(of: $0) == "weights" })
            #expect(try CheckpointFile.open(folder + "/export").tree.tensors.count == 6)
        }
    }

    /// Names are kept as they are, `/` and `\\` included (the tree escapes them in its flattened
    /// paths, and the checksums follow).
    @Test func namesWithSlashesKeepTheirChecksums() throws {
        try withTemporaryFolder { folder in
            let names = ["state/model/w", "a\\b", "plain"]
            var root = StateDict()
            for (index, name) in names.enumerated() {
                root[.string(name)] = .tensor(try Tensor(shape: [4], scalars: (0..<4).map { Float(index * 4 + $0) }))
            }
            try saveCheckpoint(tree: .dict(root), filename: folder + "/hf", format: .huggingFaceSharded(maxShardSize: 16))
            let file = try CheckpointFile.open(folder + "/hf")
            #expect(file.tree == .dict(root))
            try file.verify()
            let shard = try #require(file.huggingFaceShards?.shardPath(ofTensor: StatePath.escape("state/model/w")))
            var bytes = try readBytes(shard)
            bytes[bytes.count - 1] ^= 0x01
            try writeBytes(bytes, to: shard)
            let error = expectCheckpointError(.checksumMismatch, messageContains: ["state\\/model\\/w"]) {
                try CheckpointFile.open(folder + "/hf").verify()
            }
            #expect(error?.path == shard)
        }
    }

    @Test func oneShardStillGetsAnIndex() throws {
        try withTemporaryFolder { folder in
            try saveCheckpoint(composerLikeState(), filename: folder + "/one", format: .huggingFaceSharded())
            #expect(try folderContents(folder + "/one") == ["model-00001-of-00001.safetensors", "model.safetensors.index.json"])
        }
    }

    @Test func whatCannotBeAHuggingFaceCheckpointIsRefused() throws {
        try withTemporaryFolder { folder in
            let hf = SaveFormat.huggingFaceSharded(maxShardSize: 1000)
            var state = composerLikeState()
            state.model["config"] = .string("gpt2")
            expectCheckpointError(.invalidState, messageContains: ["state/model/config", "only tensors", "ignoreKeys"]) {
                try saveCheckpoint(state, filename: folder + "/a", format: hf)
            }
            // Leaving it out works.
            try saveCheckpoint(state, filename: folder + "/a", format: hf, ignoreKeys: .globs(["state/model/config"]))
            state.model = ["a.b": .tensor(try Tensor(shape: [1], scalars: [Float(1)])), "a": ["b": .tensor(try Tensor(shape: [1], scalars: [Float(2)]))]]
            expectCheckpointError(.invalidState, messageContains: ["\"a.b\"", "rename"]) { try saveCheckpoint(state, filename: folder + "/b", format: hf) }
            state.model = [:]
            expectCheckpointError(.invalidState, messageContains: ["state/model holds no tensor"]) {
                try saveCheckpoint(state, filename: folder + "/c", format: hf)
            }
            expectCheckpointError(.invalidArgument, messageContains: ["written whole"]) {
                try saveCheckpoint(composerLikeState(), filename: folder + "/d-{rank}", format: hf, sharding: Sharding())
            }
            expectCheckpointError(.unsupportedFormat, messageContains: ["local folders"]) {
                try saveCheckpoint(composerLikeState(), filename: "s3://bucket/e", format: hf)
            }
            expectCheckpointError(.invalidArgument, messageContains: ["at least 1 byte"]) {
                try saveCheckpoint(composerLikeState(), filename: folder + "/f", format: .huggingFaceSharded(maxShardSize: 0))
            }
            expectCheckpointError(.invalidTemplate, messageContains: ["only an extension"]) {
                try saveCheckpoint(composerLikeState(), filename: folder + "/.safetensors.index.json", format: hf)
            }
            #expect(try folderContents(folder) == ["a"])
        }
    }

    @Test func onlyRankZeroWrites() throws {
        try withTemporaryFolder { folder in
            let state = composerLikeState()
            let results = ThreadWorld.run(size: 2) { group in
                try saveCheckpoint(state, filename: folder + "/ranks-{rank}", format: .huggingFaceSharded(), processGroup: group)
            }
            for result in results {
                let paths = try result.get()
                #expect(paths == [folder + "/ranks-0/model.safetensors.index.json"])
            }
            let written = try folderContents(folder)
            #expect(written == ["ranks-0"])
        }
    }

    // MARK: Damage found

    @Test func aDamagedTensorFailsItsChecksumNamingTheShard() throws {
        try withTemporaryFolder { folder in
            let index = try saveCheckpoint(composerLikeState(), filename: folder + "/hf", format: .huggingFaceSharded(maxShardSize: 100))[0]
            let file = try CheckpointFile.open(index)
            let shard = try #require(file.huggingFaceShards?.shardPath(ofTensor: "fc2.weight"))
            var bytes = try readBytes(shard)
            bytes[bytes.count - 3] ^= 0x01
            try writeBytes(bytes, to: shard)
            let error = expectCheckpointError(.checksumMismatch, messageContains: ["\"fc2.weight\" is corrupt"]) {
                try CheckpointFile.open(index).verify()
            }
            #expect(error?.path == shard)
            expectCheckpointError(.checksumMismatch) { _ = try loadCheckpoint(folder + "/hf") }
            #expect(try loadCheckpoint(folder + "/hf", verifyChecksums: false).model.count == 6)
        }
    }

    @Test func aShardFromAnotherSaveIsNotTheOneTheIndexCommitted() throws {
        try withTemporaryFolder { folder in
            let hf = SaveFormat.huggingFaceSharded(maxShardSize: 100)
            try saveCheckpoint(composerLikeState(seed: 1), filename: folder + "/a", format: hf)
            try saveCheckpoint(composerLikeState(seed: 2), filename: folder + "/b", format: hf)
            let name = try #require(try CheckpointFile.open(folder + "/b").huggingFaceShards?.shards[1].name)
            try FileManager.default.removeItem(atPath: folder + "/a/" + name)
            try FileManager.default.copyItem(atPath: folder + "/b/" + name, toPath: folder + "/a/" + name)
            let error = expectCheckpointError(.checksumMismatch, messageContains: ["not the shard the index", "header digest"]) {
                _ = try CheckpointFile.open(folder + "/a")
            }
            #expect(error?.path == folder + "/a/" + name)
        }
    }

    @Test func shardsOfWhichOnlySomeRecordChecksumsAreRefused() throws {
        try withTemporaryFolder { folder in
            let copy = try HFShardedFixtureTests.copy("hf/bf16", into: folder)
            // Shard 3 rewritten by this library, with the same tensors (and checksums), under
            // huggingface_hub's index, which records no commit.
            let shard = copy + "/model-00003-of-00004.safetensors"
            let tensors = try #require(try CheckpointFile.open(shard).tree.dictValue).compactMap { entry in
                entry.value.tensorValue.map { (entry.key.description, $0) }
            }
            try FileManager.default.removeItem(atPath: shard)
            let writer = try AtomicFileWriter(path: shard)
            try NativeFormat.write(NativeFormat.layout(plain: tensors), to: writer)
            try writer.commit()
            expectCheckpointError(.malformed, messageContains: ["mixes shards", "model-00001-of-00004.safetensors"]) {
                _ = try CheckpointFile.open(copy)
            }
        }
    }

    // MARK: Saving over an earlier checkpoint

    static func model(seed: UInt64, tensors: Int) -> TrainingState {
        var random = SplitMix64(seed: seed)
        var state = TrainingState()
        for index in 0..<tensors {
            state.model["w\(index)"] = .tensor(try! Tensor(shape: [16], scalars: (0..<16).map { _ in Float(random.next() % 1000) }))
        }
        return state
    }

    @Test func aNewSaveReplacesTheOldOneAndItsShards() throws {
        try withTemporaryFolder { folder in
            let out = folder + "/out"
            let hf = SaveFormat.huggingFaceSharded(maxShardSize: 64)
            try saveCheckpoint(Self.model(seed: 1, tensors: 3), filename: out, format: hf)
            // Files the new save must keep: other prefixes and other files.
            try writeBytes(Array("{}".utf8), to: out + "/config.json")
            try writeBytes([1], to: out + "/other-00001-of-00002.safetensors")
            // An orphan shard of an unfinished save, which no index lists.
            try writeBytes([1], to: out + "/model-00007-of-00009.safetensors")
            for (seed, count) in [(2, 2), (3, 2), (4, 5)] {
                let state = Self.model(seed: UInt64(seed), tensors: count)
                try saveCheckpoint(state, filename: out, format: hf)
                #expect(try loadCheckpoint(out).model == state.model, "save \(seed)")
                let shards = (1...count).map { HuggingFaceSharded.shardName(number: $0, of: count) }
                #expect(
                    try folderContents(out)
                        == (["config.json", "model.safetensors.index.json", "other-00001-of-00002.safetensors"] + shards).sorted())
            }
            try FileManager.default.removeItem(atPath: out + "/other-00001-of-00002.safetensors")
        }
    }

    @Test func aFailedSaveLeavesTheOldCheckpointWhenItsShardsAreUntouched() throws {
        try withTemporaryFolder { folder in
            let out = folder + "/out"
            let hf = SaveFormat.huggingFaceSharded(maxShardSize: 64)
            let old = Self.model(seed: 1, tensors: 3)
            try saveCheckpoint(old, filename: out, format: hf)
            // The new save's second shard cannot be renamed into place: a folder has its name.
            try FileManager.default.createDirectory(atPath: out + "/model-00002-of-00002.safetensors", withIntermediateDirectories: false)
            #expect(throws: CheckpointError.self) { try saveCheckpoint(Self.model(seed: 2, tensors: 2), filename: out, format: hf) }
            #expect(try loadCheckpoint(out).model == old.model)
            #expect(!fileExists(out + "/model-00001-of-00002.safetensors"), "the failed save's shard is left behind")
        }
    }

    @Test func aSaveOverwritingTheOldShardsRemovesTheOldIndexFirst() throws {
        try withTemporaryFolder { folder in
            let out = folder + "/out"
            let hf = SaveFormat.huggingFaceSharded(maxShardSize: 64)
            try saveCheckpoint(Self.model(seed: 1, tensors: 2), filename: out, format: hf)
            // The old second shard's name blocked (as a folder), so the new save fails after
            // overwriting the first shard: the old index must be gone by then.
            try FileManager.default.removeItem(atPath: out + "/model-00002-of-00002.safetensors")
            try FileManager.default.createDirectory(atPath: out + "/model-00002-of-00002.safetensors", withIntermediateDirectories: false)
            #expect(throws: CheckpointError.self) { try saveCheckpoint(Self.model(seed: 2, tensors: 2), filename: out, format: hf) }
            #expect(try folderContents(out) == ["model-00002-of-00002.safetensors"])
            expectCheckpointError(.notFound) { _ = try loadCheckpoint(out) }
        }
    }

    @Test func aSingleFileCheckpointInTheFolderIsNotShadowed() throws {
        try withTemporaryFolder { folder in
            try FileManager.default.createDirectory(atPath: folder + "/out", withIntermediateDirectories: false)
            try FileManager.default.copyItem(
                atPath: Fixtures.path("safetensors/all_dtypes.safetensors"), toPath: folder + "/out/model.safetensors")
            expectCheckpointError(.alreadyExists, messageContains: ["model.safetensors", "transformers would load"]) {
                try saveCheckpoint(composerLikeState(), filename: folder + "/out", format: .huggingFaceSharded())
            }
            #expect(try folderContents(folder + "/out") == ["model.safetensors"])
        }
    }
}
