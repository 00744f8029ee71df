import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Composer's save and load semantics: weights-only, ignore-keys, strictness,
/// what a full load restores, file names, atomic replacement and unsupported formats.
@Suite struct SaveLoadSemanticsTests {
    private static func f32(_ values: [Float], _ shape: [Int]? = nil) -> StateValue {
        .tensor(try! Tensor(shape: shape ?? [values.count], scalars: values))
    }

    /// A state whose model keys exercise the glob patterns.
    private static func layeredState() -> TrainingState {
        var state = composerLikeState(seed: 5)
        state.model = [
            "layer1.weight": f32([1, 2]), "layer1.bias": f32([3]), "layer2.weight": f32([4, 5]),
            "layer2.bias": f32([6]), "layer3.weight": f32([7, 8]), "layer10.bias": f32([9]),
            "enc/dec": f32([10]),
        ]
        state.algorithms = ["a", "b", "c", "d"]
        state.integrations = ["huggingface": ["model_name": "tiny"]]
        return state
    }

    /// The same keys, dtypes and shapes, all bytes zero: a freshly initialised model.
    private static func zeroed(_ model: StateDict) -> StateDict {
        model.mapValues { value in
            let tensor = value.tensorValue!
            return .tensor(
                try! Tensor(dtype: tensor.dtype, shape: tensor.shape, bytes: [UInt8](repeating: 0, count: tensor.byteCount)))
        }
    }

    private static func open(_ path: String) throws -> StateValue { try CheckpointFile.open(path).tree }

    // MARK: Weights-only

    @Test func weightsOnlySaveKeepsModelIntegrationsAndMetadataOnly() throws {
        let state = Self.layeredState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/w.safetensors", weightsOnly: true)[0]
            let tree = try Self.open(path)
            #expect(
                tree
                    == .dict([
                        "state": .dict([
                            "model": .dict(state.model), "integrations": .dict(state.integrations),
                            "metadata": .dict(state.metadata),
                        ])
                    ]))
            #expect(tree.dictValue?["rng"] == nil)

            // A full load of it changes the model and keeps everything the file does not hold.
            var target = composerLikeState(seed: 6)
            target.model = Self.zeroed(state.model)
            let before = target
            let result = try loadCheckpoint(path, into: &target)
            #expect(target.model == state.model)
            #expect(target.optimizers == before.optimizers)
            #expect(target.timestamp == before.timestamp)
            #expect(target.rng == before.rng)
            #expect(result.rng == nil)
        }
    }

    @Test func weightsOnlyLoadTakesOnlyTheModel() throws {
        let saved = composerLikeState(seed: 1)
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/full.safetensors")[0]
            var target = composerLikeState(seed: 2)
            target.timestamp = Timestamp(epoch: 9)
            let before = target
            let result = try loadCheckpoint(path, into: &target, weightsOnly: true)
            #expect(target.model == saved.model)
            #expect(target.optimizers == before.optimizers)
            #expect(target.timestamp.epoch == 9)
            #expect(target.rng == before.rng)
            #expect(result.rng == nil)

            let modelOnly = try loadCheckpoint(path, weightsOnly: true)
            #expect(modelOnly == TrainingState(model: saved.model))
        }
    }

    @Test func weightsOnlyNeedsATrainingTree() throws {
        try withTemporaryFolder { folder in
            expectCheckpointError(.invalidState, messageContains: ["state"]) {
                try saveCheckpoint(tree: ["model": 1], filename: folder + "/x.safetensors", weightsOnly: true)
            }
            let contents = try folderContents(folder)
            #expect(contents.isEmpty)
        }
    }

    // MARK: Ignore-keys on save

    @Test(arguments: [
        // Composer's idiom: the optimizers' contents go, the (now empty) dict stays.
        (["state/optimizers/*"], ["state/optimizers/AdamW"], ["state/optimizers", "state/model/layer1.bias"]),
        (["state/model/layer?.bias"], ["state/model/layer1.bias", "state/model/layer2.bias"],
         ["state/model/layer10.bias", "state/model/layer1.weight"]),
        (["state/model/layer[12].weight"], ["state/model/layer1.weight", "state/model/layer2.weight"],
         ["state/model/layer3.weight", "state/model/layer1.bias"]),
        (["state/model/layer[!1]*"], ["state/model/layer2.bias", "state/model/layer3.weight"],
         ["state/model/layer1.bias", "state/model/layer10.bias"]),
        (["rng"], ["rng"], ["state/model/layer1.weight", "state/timestamp"]),
        // `*` crosses `/`: every exp_avg_sq of every parameter.
        (["*exp_avg_sq"], ["state/optimizers/AdamW/state/0/exp_avg_sq", "state/optimizers/AdamW/state/3/exp_avg_sq"],
         ["state/optimizers/AdamW/state/0/exp_avg"]),
        // A key with a slash is matched through its escaped path.
        (["state/model/enc\\/dec"], ["state/model/enc\\/dec"], ["state/model/layer1.weight"]),
        (["state/model/enc/dec"], [], ["state/model/enc\\/dec"]),
    ])
    func ignoreKeysOnSave(patterns: [String], removed: [String], kept: [String]) throws {
        let state = Self.layeredState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(
                state, filename: folder + "/x.safetensors", ignoreKeys: .globs(patterns))[0]
            let tree = try Self.open(path)
            for gone in removed { #expect(tree[path: gone] == nil, "\(gone) should be removed by \(patterns)") }
            for here in kept { #expect(tree[path: here] != nil, "\(here) should survive \(patterns)") }
            #expect(state.tree[path: removed.first ?? kept[0]] != nil)
        }
    }

    @Test func ignoredListItemsKeepTheirOriginalIndices() throws {
        let state = Self.layeredState()
        try withTemporaryFolder { folder in
            // Indices refer to the list before removal, as in Composer: 1 and 2 are "b" and "c".
            let path = try saveCheckpoint(
                state, filename: folder + "/x.safetensors", ignoreKeys: ["state/algorithms/1", "state/algorithms/2"])[0]
            #expect(try Self.open(path)[path: "state/algorithms"] == .list(["a", "d"]))
            let loaded = try loadCheckpoint(path)
            #expect(loaded.algorithms == ["a", "d"])
        }
    }

    @Test func ignoreKeysClosureEditsTheTree() throws {
        let state = Self.layeredState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(
                state, filename: folder + "/x.safetensors",
                ignoreKeys: .closure { tree in
                    guard case .dict(var root) = tree, case .dict(var inner)? = root["state"] else { return }
                    inner["run_name"] = "renamed"
                    root["state"] = .dict(inner)
                    tree = .dict(root)
                })[0]
            #expect(try loadCheckpoint(path).runName == "renamed")
        }
    }

    @Test func anUnmatchedPatternOnSaveStillSaves() throws {
        let state = Self.layeredState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors", ignoreKeys: ["state/nothing/*"])[0]
            #expect(try loadCheckpoint(path) == state)
        }
    }

    // MARK: Ignore-keys on load

    @Test func ignoreKeysOnLoad() throws {
        let saved = Self.layeredState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/x.safetensors")[0]
            var target = TrainingState(
                model: Self.zeroed(saved.model), optimizers: ["SGD": ["lr": 1.0]], timestamp: Timestamp(batch: 99),
                rng: ["mine"])
            let fresh = target
            let result = try loadCheckpoint(
                path, into: &target, ignoreKeys: ["state/optimizers", "state/timestamp", "rng", "state/nothing*"])
            #expect(result.unmatchedIgnoreKeys == ["state/nothing*"])
            #expect(target.model == saved.model)
            #expect(target.optimizers == fresh.optimizers, "ignored optimizers keep their current state")
            #expect(target.timestamp.batch == 99)
            #expect(target.rng == ["mine"])
            #expect(result.rng == nil)
            #expect(target.algorithms == saved.algorithms)
        }
    }

    @Test func ignoringAModelKeyOnLoadMakesItMissing() throws {
        let saved = Self.layeredState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/x.safetensors")[0]
            var target = TrainingState(model: saved.model)
            target.model["layer1.bias"] = Self.f32([-1])
            let before = target
            expectCheckpointError(.keyMismatch, messageContains: ["layer1.bias", "missing"]) {
                try loadCheckpoint(path, into: &target, ignoreKeys: ["state/model/layer1.bias"])
            }
            #expect(target == before)
            let result = try loadCheckpoint(path, into: &target, strict: false, ignoreKeys: ["state/model/layer1.bias"])
            #expect(result.missingKeys == ["layer1.bias"])
            #expect(result.unexpectedKeys.isEmpty)
            #expect(target.model["layer1.bias"] == Self.f32([-1]), "a missing key keeps its value")
            #expect(target.model["layer2.bias"] == saved.model["layer2.bias"])
        }
    }

    // MARK: Strictness and mismatches

    @Test func strictLoadListsMissingAndUnexpectedKeys() throws {
        let saved = composerLikeState(seed: 3)
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/x.safetensors")[0]
            var target = composerLikeState(seed: 4)
            target.model["fc2.bias"] = nil
            target.model["head.weight"] = Self.f32([5, 5])
            let before = target
            expectCheckpointError(.keyMismatch, messageContains: ["head.weight", "fc2.bias", "strict"]) {
                try loadCheckpoint(path, into: &target)
            }
            #expect(target == before, "a refused load changes nothing")

            let result = try loadCheckpoint(path, into: &target, strict: false)
            #expect(result.missingKeys == ["head.weight"])
            #expect(result.unexpectedKeys == ["fc2.bias"])
            #expect(target.model["head.weight"] == Self.f32([5, 5]))
            #expect(target.model["fc2.bias"] == nil, "unexpected keys are not loaded")
            #expect(target.model["fc1.weight"] == saved.model["fc1.weight"])
            #expect(target.optimizers == saved.optimizers)
            #expect(target.timestamp == saved.timestamp)
        }
    }

    @Test(arguments: [(DType.float64, [8, 4]), (DType.float32, [4, 8]), (DType.bfloat16, [32])])
    func aTensorOfAnotherDTypeOrShapeIsAnError(dtype: DType, shape: [Int]) throws {
        let saved = composerLikeState(seed: 3)
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/x.safetensors")[0]
            var target = saved
            // fc1.weight is float32 [8, 4] in the checkpoint.
            target.model["fc1.weight"] = .tensor(
                try Tensor(dtype: dtype, shape: shape, bytes: [UInt8](repeating: 0, count: shape.reduce(1, *) * dtype.byteSize)))
            let before = target
            for strict in [true, false] {
                expectCheckpointError(.keyMismatch, messageContains: ["fc1.weight", "float32 [8, 4]", "\(dtype.rawValue) \(shape)"]) {
                    try loadCheckpoint(path, into: &target, strict: strict)
                }
                #expect(target == before, "a refused load changes nothing")
            }
        }
    }

    // MARK: Full resume

    @Test func fullLoadRestoresTimestampOptimizersAndRank0Rng() throws {
        var saved = composerLikeState(seed: 8)
        saved.timestamp = Timestamp(epoch: 3, batch: 12, sample: 192, batchInEpoch: 4, totalWct: .seconds(61))
        saved.schedulers = ["CosineAnnealingLR": ["last_epoch": 12]]
        saved.extra = ["custom_key": ["kept": true]]
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/x.safetensors")[0]
            var target = TrainingState(model: composerLikeState(seed: 9).model, runName: "other")
            let result = try loadCheckpoint(path, into: &target)
            #expect(target.timestamp == saved.timestamp)
            #expect(target.optimizers == saved.optimizers)
            #expect(target.schedulers == saved.schedulers)
            #expect(target.rankZeroSeed == 42)
            #expect(target.runName == "fixture-run")
            #expect(target.extra == saved.extra)
            #expect(target.rng == saved.rng)
            #expect(result.rng == saved.rng[0])
        }
    }

    @Test func rngOfAnotherWorldSizeIsNotRestored() throws {
        var saved = composerLikeState(seed: 8)
        saved.rng = [["rank": 0], ["rank": 1]]
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/x.safetensors")[0]
            var target = TrainingState(model: saved.model, rng: ["mine"])
            let result = try loadCheckpoint(path, into: &target)
            #expect(result.rng == nil)
            #expect(target.rng == ["mine"])
            #expect(target.timestamp == saved.timestamp)
        }
    }

    // MARK: File names

    @Test func filenameTemplateCreatesMissingFolders() throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let paths = try saveCheckpoint(
                state, filename: folder + "/{run_name}/checkpoints/ep{epoch:03d}-ba{batch}-{{rank{rank}}}.safetensors")
            let expected = folder + "/fixture-run/checkpoints/ep001-ba4-{rank0}.safetensors"
            #expect(paths == [expected])
            #expect(fileExists(expected))
            #expect(try folderContents(folder + "/fixture-run/checkpoints") == ["ep001-ba4-{rank0}.safetensors"])
            // A load path is a template too: braces are escaped, {rank} and {run_name} filled in.
            var target = TrainingState(model: state.model, runName: "fixture-run")
            try loadCheckpoint(folder + "/{run_name}/checkpoints/ep001-ba4-{{rank{rank}}}.safetensors", into: &target)
            #expect(target == state)
        }
    }

    @Test func loadPathTemplateFillsRankAndRunName() throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let saved = try saveCheckpoint(state, filename: folder + "/{run_name}-rank{rank}.safetensors")[0]
            #expect(saved == folder + "/fixture-run-rank0.safetensors")
            var target = TrainingState(model: state.model, runName: "fixture-run")
            let result = try loadCheckpoint(folder + "/{run_name}-rank{rank}.safetensors", into: &target)
            #expect(result.path == saved)
            #expect(target == state)
            // Variables only known after reading the checkpoint cannot name it.
            expectCheckpointError(.invalidTemplate, messageContains: ["epoch"]) {
                _ = try loadCheckpoint(folder + "/ep{epoch}.safetensors")
            }
        }
    }

    @Test func noExtensionIsTheNativeFormat() throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/ep{epoch}-ba{batch}-rank{rank}")[0]
            #expect(path == folder + "/ep1-ba4-rank0")
            let file = try CheckpointFile.open(path)
            #expect(file.isNative)
            #expect(try TrainingState(tree: file.tree) == state)
        }
    }

    // MARK: Atomic replacement

    @Test func savingOverAFileReplacesItAtomically() throws {
        let first = composerLikeState(seed: 1)
        var second = composerLikeState(seed: 2)
        second.timestamp.batch = 8
        try withTemporaryFolder { folder in
            let path = folder + "/latest.safetensors"
            try saveCheckpoint(first, filename: path)
            let reader = try CheckpointFile.open(path)  // a reader that has the old file open
            try saveCheckpoint(second, filename: path)
            #expect(try loadCheckpoint(path) == second)
            // The old file was replaced by a rename, not rewritten in place: its reader still
            // sees the old bytes, intact.
            try reader.verify()
            #expect(try TrainingState(tree: reader.tree) == first)
            #expect(try folderContents(folder) == ["latest.safetensors"], "no temporary file is left")

            // A save that fails leaves the previous file as it was.
            let bad: StateValue = ["state": .dict([.int(1): Self.f32([1]), "1": Self.f32([2])])]
            #expect(throws: CheckpointError.self) { try saveCheckpoint(tree: bad, filename: path) }
            #expect(try loadCheckpoint(path) == second)
            #expect(try folderContents(folder) == ["latest.safetensors"])
        }
    }

    // MARK: Missing files

    @Test func loadingAMissingFileIsNotFound() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/nope.safetensors"
            var state = TrainingState()
            let error = expectCheckpointError(.notFound) { try loadCheckpoint(path, into: &state) }
            #expect(error?.path == path)
            expectCheckpointError(.notFound) { _ = try loadCheckpoint(path) }
            expectCheckpointError(.notFound) { _ = try CheckpointFile.open(folder + "/missing/deeper.safetensors") }
            #expect(state == TrainingState())
        }
    }
}
