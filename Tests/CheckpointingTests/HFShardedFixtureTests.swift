import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The Hugging Face sharded folders written by `huggingface_hub.save_torch_state_dict(...,
/// max_shard_size="40KB")` read as one checkpoint, bit for bit, and damaged or hostile
/// folders refused with a clear error.
@Suite struct HFShardedFixtureTests {
    static let fixtures = ["hf/fp32", "hf/bf16"]

    /// `sharded/expected.json`'s tensors for one fixture: name to (dtype, shape, SHA-256).
    static func expectedTensors(_ fixture: String) throws -> [String: (dtype: String, shape: [Int], sha256: String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("sharded/expected.json")))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let entry = try #require(root[fixture] as? [String: Any], "sharded/expected.json describes no \(fixture)")
        let tensors = try #require(entry["tensors"] as? [String: [String: Any]])
        return try tensors.mapValues { info in
            (
                try #require(info["dtype"] as? String), try #require(info["shape"] as? [Any]).compactMap(jsonInt),
                try #require(info["sha256"] as? String)
            )
        }
    }

    /// The index's `weight_map`, in order, as Python's `json` reads it.
    static func weightMap(_ indexPath: String) throws -> [(String, String)] {
        let output = try runPython(
            "import json, sys; print(json.dumps(list(json.load(open(sys.argv[1]))['weight_map'].items())))", [indexPath])
        let pairs = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String]])
        return pairs.map { ($0[0], $0[1]) }
    }

    @Test(arguments: fixtures)
    func everyTensorMatchesExpectedBitForBit(fixture: String) throws {
        let folder = Fixtures.path("sharded/" + fixture)
        let expected = try Self.expectedTensors(fixture)
        for path in [folder, folder + "/model.safetensors.index.json"] {
            let file = try CheckpointFile.open(path)
            #expect(file.path == folder + "/model.safetensors.index.json")
            #expect(file.formatName == "hf-sharded")
            let root = try #require(file.tree.dictValue)
            // The tree holds every tensor at its root, in the weight_map's order (which is
            // also the shards' order in these folders).
            #expect(root.keys.map(\.description) == (try Self.weightMap(file.path)).map(\.0))
            #expect(root.count == expected.count)
            for (name, want) in expected {
                let tensor = try #require(root[.string(name)]?.tensorValue, "\(fixture) has no tensor \(name)")
                #expect(tensor.dtype.rawValue == want.dtype, "\(name)")
                #expect(tensor.shape == want.shape, "\(name)")
                #expect(tensor.withUnsafeBytes { sha256Hex($0) } == want.sha256, "bytes of \(name) in \(fixture)")
            }
            let shards = try #require(file.huggingFaceShards)
            #expect(shards.shards.count == (fixture == "hf/fp32" ? 8 : 4))
            #expect(shards.shards.map(\.name) == shards.shards.indices.map {
                HuggingFaceSharded.shardName(number: $0 + 1, of: shards.shards.count)
            })
            for (tensor, shard) in try Self.weightMap(file.path) {
                #expect(shards.shardPath(ofTensor: tensor) == folder + "/" + shard)
            }
            // Written by huggingface_hub: no checksums, no commit record; the stated total matches.
            #expect(!shards.hasChecksums && !shards.isCommitRecorded)
            var total = 0
            for want in expected.values { total += want.shape.reduce(try #require(DType(rawValue: want.dtype)).byteSize, *) }
            #expect(shards.statedTotalSize == total)
            #expect(file.byteCount == shards.shards.reduce(0) { $0 + $1.byteCount } + (try readBytes(file.path)).count)
            try file.verify()
        }
    }

    @Test func loadsIntoTheModelOfATrainingState() throws {
        let folder = Fixtures.path("sharded/hf/bf16")
        let expected = try Self.expectedTensors("hf/bf16")
        let state = try loadCheckpoint(folder)
        #expect(Set(state.model.keys.map(\.description)) == Set(expected.keys))
        #expect(state.optimizers.isEmpty && state.rng.isEmpty)

        // Strict: the model's keys must match; values load, the rest of the state stays.
        var target = TrainingState(model: state.model.mapValues { _ in .none }, runName: "kept")
        target.optimizers = ["AdamW": ["lr": 0.1]]
        let result = try loadCheckpoint(folder, into: &target)
        #expect(result.path == folder + "/model.safetensors.index.json")
        #expect(target.model == state.model)
        #expect(target.runName == "kept" && target.optimizers == ["AdamW": ["lr": 0.1]])

        var mismatched = TrainingState(model: ["layers.0.q_proj.weight": .none, "lm_head.weight": .none])
        expectCheckpointError(.keyMismatch, messageContains: ["lm_head.weight", "norm.weight"]) {
            try loadCheckpoint(folder, into: &mismatched)
        }
    }

    // MARK: Damaged and hostile folders

    /// A copy of a fixture folder in `folder`, to damage.
    static func copy(_ fixture: String, into folder: String) throws -> String {
        let copy = folder + "/" + fixture.replacingOccurrences(of: "/", with: "-")
        try FileManager.default.copyItem(atPath: Fixtures.path("sharded/" + fixture), toPath: copy)
        return copy
    }

    /// Rewrites the index of `folder` with `edit` applied to its text.
    static func editIndex(_ folder: String, _ edit: (String) -> String) throws {
        let path = folder + "/model.safetensors.index.json"
        let text = String(decoding: try readBytes(path), as: UTF8.self)
        let edited = edit(text)
        #expect(edited != text, "the edit changed nothing")
        try writeBytes(Array(edited.utf8), to: path)
    }

    @Test func aMissingShardIsRefusedNamingIt() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            try FileManager.default.removeItem(atPath: copy + "/model-00003-of-00008.safetensors")
            let error = expectCheckpointError(.notFound, messageContains: ["model-00003-of-00008.safetensors", "layers.1.q_proj.weight", "missing"]) {
                _ = try CheckpointFile.open(copy)
            }
            #expect(error?.path == copy + "/model-00003-of-00008.safetensors")
        }
    }

    @Test func aTensorMissingFromTheWeightMapIsRefused() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            try Self.editIndex(copy) { $0.replacingOccurrences(of: ",\n    \"norm.weight\": \"model-00008-of-00008.safetensors\"", with: "") }
            expectCheckpointError(.malformed, messageContains: ["norm.weight", "does not list"]) { _ = try CheckpointFile.open(copy) }
        }
    }

    @Test func aTensorMissingFromTheShardsIsRefused() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            try Self.editIndex(copy) {
                $0.replacingOccurrences(of: "\"weight_map\": {", with: "\"weight_map\": {\n    \"lm_head.weight\": \"model-00001-of-00008.safetensors\",")
            }
            expectCheckpointError(.malformed, messageContains: ["lm_head.weight", "in no shard"]) { _ = try CheckpointFile.open(copy) }
        }
    }

    @Test func aTensorListedTwiceIsRefused() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            // Python's json keeps the last of the two, JSONDecoder the first: either would be a silent choice.
            try Self.editIndex(copy) {
                $0.replacingOccurrences(of: "\"weight_map\": {", with: "\"weight_map\": {\n    \"norm.weight\": \"model-00001-of-00008.safetensors\",")
            }
            expectCheckpointError(.malformed, messageContains: ["norm.weight", "twice"]) { _ = try CheckpointFile.open(copy) }
        }
    }

    @Test func aTensorInTheWrongShardIsRefused() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/bf16", into: folder)
            try Self.editIndex(copy) {
                $0.replacingOccurrences(
                    of: "\"norm.weight\": \"model-00004-of-00004.safetensors\"", with: "\"norm.weight\": \"model-00002-of-00004.safetensors\"")
            }
            expectCheckpointError(
                .malformed, messageContains: ["norm.weight", "model-00002-of-00004.safetensors", "model-00004-of-00004.safetensors"]
            ) { _ = try CheckpointFile.open(copy) }
        }
    }

    @Test func aTensorInTwoShardsIsRefused() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/bf16", into: folder)
            // Shard 2 rewritten to also hold shard 1's first tensor.
            let first = try CheckpointFile.open(copy + "/model-00001-of-00004.safetensors").tree.dictValue ?? [:]
            var second = try CheckpointFile.open(copy + "/model-00002-of-00004.safetensors").tree.dictValue ?? [:]
            second["layers.0.q_proj.weight"] = first["layers.0.q_proj.weight"]
            let layout = NativeFormat.layout(plain: second.compactMap { entry in entry.value.tensorValue.map { (entry.key.description, $0) } })
            let writer = try AtomicFileWriter(path: copy + "/model-00002-of-00004.safetensors")
            try NativeFormat.write(layout, to: writer)
            try writer.commit()
            expectCheckpointError(.malformed, messageContains: ["layers.0.q_proj.weight", "two shards"]) { _ = try CheckpointFile.open(copy) }
        }
    }

    @Test func aMalformedIndexIsRefusedWithItsOffset() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            let index = copy + "/model.safetensors.index.json"
            let text = try readBytes(index)
            let cases: [(String, [UInt8], [String])] = [
                ("truncated", Array(text.prefix(text.count / 2)), ["not valid JSON"]),
                ("not an object", Array("[1, 2]".utf8), ["not a JSON object"]),
                ("no weight_map", Array("{\"metadata\": {}}".utf8), ["no \"weight_map\""]),
                ("weight_map a list", Array("{\"weight_map\": []}".utf8), ["not an object"]),
                ("empty weight_map", Array("{\"weight_map\": {}}".utf8), ["empty"]),
                ("a shard that is a number", Array("{\"weight_map\": {\"a\": 3}}".utf8), ["\"a\"", "a number"]),
                ("two weight_maps", Array("{\"weight_map\": {\"a\": \"b.safetensors\"}, \"weight_map\": {}}".utf8), ["twice"]),
                ("metadata a string", Array("{\"metadata\": \"x\", \"weight_map\": {\"norm.weight\": \"model-00008-of-00008.safetensors\"}}".utf8), ["metadata"]),
                ("invalid UTF-8", Array("{\"weight_map\": {\"".utf8) + [0xFF] + Array("\": \"x.safetensors\"}}".utf8), ["UTF-8"]),
                ("a lone surrogate", Array("{\"weight_map\": {\"\\ud800\": \"x.safetensors\"}}".utf8), ["surrogate"]),
                ("trailing text", text + Array(" x".utf8), ["after the JSON value"]),
            ]
            for (what, bytes, fragments) in cases {
                try writeBytes(bytes, to: index)
                let error = expectCheckpointError(.malformed, messageContains: fragments) { _ = try CheckpointFile.open(copy) }
                #expect(error?.path == index, "\(what)")
            }
            let error = try #require(expectCheckpointError(.malformed) {
                try writeBytes(Array("{\"weight_map\": {\"a\": \"b.safetensors\",}}".utf8), to: index)
                _ = try CheckpointFile.open(copy)
            })
            #expect(error.offset == 37, "the offset of the trailing comma's error: \(error)")
        }
    }

    @Test(arguments: [
        "../outside.safetensors", "/tmp/outside.safetensors", "sub/../../outside.safetensors", "..\\outside.safetensors",
        "C:outside.safetensors", "", "./model-00001-of-00008.safetensors", "sub//x.safetensors", "model.bin",
    ])
    func aShardNameOutsideTheFolderIsRefused(name: String) throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            // A valid shard really is there, outside the checkpoint's folder: it must not be read.
            try FileManager.default.copyItem(
                atPath: copy + "/model-00008-of-00008.safetensors", toPath: folder + "/outside.safetensors")
            try Self.editIndex(copy) {
                $0.replacingOccurrences(of: "\"norm.weight\": \"model-00008-of-00008.safetensors\"", with: "\"norm.weight\": \(JSONText.quoted(name))")
            }
            let error = expectCheckpointError(.malformed, messageContains: ["norm.weight", "inside the index's folder"]) {
                _ = try CheckpointFile.open(copy)
            }
            #expect(error?.path == copy + "/model.safetensors.index.json")
        }
    }

    @Test func aDamagedShardIsRefusedNamingIt() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/fp32", into: folder)
            let shard = copy + "/model-00005-of-00008.safetensors"
            try writeBytes(Array(try readBytes(shard).dropLast(100)), to: shard)
            let error = expectCheckpointError(.malformed, messageContains: ["truncated"]) { _ = try CheckpointFile.open(copy) }
            #expect(error?.path == shard)
        }
    }

    @Test func aNativeCheckpointIsNotAShard() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/bf16", into: folder)
            try saveCheckpoint(composerLikeState(), filename: copy + "/model-00004-of-00004.safetensors")
            expectCheckpointError(.malformed, messageContains: ["native checkpoint", "not a Hugging Face shard"]) {
                _ = try CheckpointFile.open(copy)
            }
        }
    }

    @Test func aFolderWithShardsAndNoIndexHoldsNoCheckpoint() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/bf16", into: folder)
            try FileManager.default.removeItem(atPath: copy + "/model.safetensors.index.json")
            let opens: [() throws -> Void] = [{ _ = try CheckpointFile.open(copy) }, { _ = try loadCheckpoint(copy) }]
            for open in opens {
                expectCheckpointError(.notFound, messageContains: ["model-00001-of-00004.safetensors", "no index", "did not finish"], open)
            }
        }
    }

    @Test func aFolderWithTwoIndexesIsAmbiguous() throws {
        try withTemporaryFolder { folder in
            let copy = try Self.copy("hf/bf16", into: folder)
            try FileManager.default.copyItem(
                atPath: copy + "/model.safetensors.index.json", toPath: copy + "/other.safetensors.index.json")
            expectCheckpointError(.invalidArgument, messageContains: ["2 Hugging Face indexes", "other.safetensors.index.json"]) {
                _ = try CheckpointFile.open(copy)
            }
            // Naming one of them works.
            #expect(try CheckpointFile.open(copy + "/other.safetensors.index.json").tree.tensors.count == 9)
        }
    }
}
