import CheckpointingTestSupport
import Foundation
import PropertyBased
import Testing

@testable import Checkpointing

/// What is saved in the native format comes back bit for bit.
@Suite struct NativeRoundTripTests {
    /// Saves `tree` to `<folder>/x.safetensors` and returns the path.
    private func save(_ tree: StateValue, in folder: String) throws -> String {
        let paths = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors")
        #expect(paths == [folder + "/x.safetensors"])
        return folder + "/x.safetensors"
    }

    @Test func randomTreesRoundTripBitExactly() async {
        await propertyCheck(count: 40, input: Gen.uint64()) { seed in
            let tree = RandomTree.make(seed: seed)
            try withTemporaryFolder { folder in
                let path = try save(tree, in: folder)
                let file = try CheckpointFile.open(path)
                #expect(file.kind == .safetensors)
                #expect(file.isNative)
                #expect(file.hasChecksums == !tree.tensors.isEmpty)
                try file.verify()
                #expect(file.tree == tree, "seed \(seed)")
                // Every tensor is reachable by its flattened path, and reads from the mapping.
                for (tensorPath, tensor) in tree.tensors {
                    let loaded = try #require(file.tree[path: tensorPath]?.tensorValue, "\(tensorPath) (seed \(seed))")
                    #expect(loaded == tensor)
                    #expect(loaded.storage == .mapped)
                }
                // Nothing but the checkpoint is left in the folder: no temporary file.
                #expect(try folderContents(folder) == ["x.safetensors"])
            }
        }
    }

    @Test func everyDTypeAndShapeRoundTrips() throws {
        let tree = RandomTree.everyDType()
        try withTemporaryFolder { folder in
            let file = try CheckpointFile.open(try save(tree, in: folder))
            try file.verify()
            #expect(file.tree == tree)
            let dtypes = Set(file.tree.tensors.map(\.tensor.dtype))
            #expect(dtypes == Set(DType.allCases))
            #expect(file.tree[path: "scalar\\/float32"]?.tensorValue?.shape == [])
            #expect(file.tree[path: "empty2d.bfloat16"]?.tensorValue?.shape == [3, 0])
            #expect(file.tree[path: "empty2d.bfloat16"]?.tensorValue?.byteCount == 0)
        }
    }

    @Test func awkwardScalarsRoundTripBitExactly() throws {
        let tree = RandomTree.edgeCases
        try withTemporaryFolder { folder in
            let loaded = try CheckpointFile.open(try save(tree, in: folder)).tree
            #expect(loaded == tree)
            // Spot checks of what `==` hides from a reader of the test: NaN payloads, signs, sizes.
            let values = try #require(loaded.dictValue).map(\.value)
            let floats = values.compactMap(\.floatValue)
            #expect(floats.contains { $0.bitPattern == (-0.0 as Double).bitPattern })
            #expect(floats.contains { $0.bitPattern == 0xFFF8_0000_0000_BEEF })
            #expect(floats.contains { $0.bitPattern == Double.signalingNaN.bitPattern })
            let ints = values.compactMap { value -> String? in
                if case .int(let integer) = value { String(integer) } else { nil }
            }
            #expect(ints.contains("-1606938044258990275541962092341162602522202993782792835301376"))  // -2^200
            #expect(ints.contains("1180591620717411303424"))  // 2^70
            #expect(values.contains(.duration(.milliseconds(-1500))))
            #expect(values.contains(.string("\u{0}\u{1}\u{7}\u{1B}\u{1F}\u{7F}")))
        }
    }

    @Test func deeplyNestedTreeRoundTrips() throws {
        var tree: StateValue = .tensor(try Tensor(shape: [2], scalars: [Float(1), .nan]))
        for level in 0..<40 {
            tree = level % 2 == 0 ? .dict([.int(-level): tree, "é/✓": .list([])]) : .list([.none, tree])
        }
        try withTemporaryFolder { folder in
            let file = try CheckpointFile.open(try save(tree, in: folder))
            try file.verify()
            #expect(file.tree == tree)
            #expect(file.tree.tensors.count == 1)
        }
    }

    /// `ReadingLimits.maximumDepth` is the documented limit: anything up to it saves and reads
    /// back, up to the deepest it may be raised to.
    @Test(arguments: [ReadingLimits().maximumDepth, ReadingLimits.deepestSupportedDepth])
    func dictsNestedUpToTheDocumentedLimitRoundTrip(depth: Int) throws {
        var tree: StateValue = .tensor(try Tensor(shape: [1], scalars: [Int8(-1)]))
        for _ in 0..<depth { tree = .dict(["k": tree]) }
        var limits = ReadingLimits()
        limits.maximumDepth = depth
        try withTemporaryFolder { folder in
            let outcome = Result { () throws(CheckpointError) in
                let path = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors", limits: limits)[0]
                return try CheckpointFile.open(path, limits: limits).tree
            }
            switch outcome {
            case .success(let loaded):
                #expect(loaded == tree)
            case .failure(let error):
                let message = "\(error)"
                Issue.record("a tree within the depth limit was refused (\(message.count) characters): \(message.prefix(200))")
            }
        }
    }

    /// Flattened paths are unambiguous, so the empty key at the root is a key like any
    /// other, and every tensor is found again by the path `tensors` gives it.
    @Test func anEmptyRootKeyKeepsPathsUnambiguous() throws {
        let inner = StateValue.tensor(try Tensor(shape: [1], scalars: [Float(1)]))
        let outer = StateValue.tensor(try Tensor(shape: [1], scalars: [Float(2)]))
        let nested: StateValue = ["": ["x": inner]]
        for (tensorPath, tensor) in nested.tensors {
            #expect(nested[path: tensorPath]?.tensorValue == tensor, "path \"\(tensorPath)\" does not lead back to its tensor")
        }
        let tree: StateValue = ["": ["x": inner], "x": outer]
        try withTemporaryFolder { folder in
            switch Result(catching: { try CheckpointFile.open(try save(tree, in: folder)).tree }) {
            case .success(let loaded): #expect(loaded == tree)
            case .failure(let error): Issue.record("a tree with an empty root key was refused: \(error)")
            }
        }
    }

    @Test func tensorsOfEveryStorageKindSaveTheirBytes() throws {
        let scalars: [Float] = [1, -2, .infinity, .nan]
        let owner = scalars.withUnsafeBytes { Data($0) } as NSData
        let borrowed = try Tensor(
            borrowing: UnsafeRawBufferPointer(start: owner.bytes, count: owner.length), dtype: .float32, shape: [2, 2],
            owner: owner)
        let filled = try Tensor(dtype: .int16, shape: [3]) { buffer in
            buffer.storeBytes(of: Int16(-1).littleEndian, toByteOffset: 0, as: Int16.self)
            buffer.storeBytes(of: Int16(300).littleEndian, toByteOffset: 4, as: Int16.self)
        }
        let tree: StateValue = ["borrowed": .tensor(borrowed), "filled": .tensor(filled)]
        #expect(borrowed.storage == .borrowed)
        try withTemporaryFolder { folder in
            let loaded = try CheckpointFile.open(try save(tree, in: folder)).tree
            #expect(loaded == tree)
            #expect(try loaded[path: "filled"]?.tensorValue?.scalars(as: Int16.self) == [-1, 0, 300])
            let floats = try #require(try loaded[path: "borrowed"]?.tensorValue?.scalars(as: Float.self))
            #expect(floats[0] == 1 && floats[1] == -2 && floats[2] == .infinity && floats[3].isNaN)
        }
    }

    @Test func trainingStateRoundTripsThroughSaveAndLoad() throws {
        let state = composerLikeState()
        try withTemporaryFolder { folder in
            let paths = try saveCheckpoint(state, filename: folder + "/ep{epoch}-ba{batch}-rank{rank}.safetensors")
            #expect(paths == [folder + "/ep1-ba4-rank0.safetensors"])
            let loaded = try loadCheckpoint(paths[0])
            #expect(loaded == state)
            #expect(loaded.timestamp.batchWct == .nanoseconds(987_654_321))
            #expect(StateValue.dict(loaded.optimizers)[path: "AdamW/state/3/exp_avg"]?.tensorValue?.shape == [3])
            for (name, value) in loaded.model {
                #expect(value.tensorValue?.storage == .mapped, "model tensor \(name) should be memory-mapped")
            }
        }
    }

    @Test func loadIntoAStateRestoresEverything() throws {
        let saved = composerLikeState(seed: 11)
        // A fresh run: same model keys, other values, nothing else.
        var state = TrainingState(model: composerLikeState(seed: 99).model)
        #expect(state.model != saved.model)
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(saved, filename: folder + "/ckpt")[0]
            let result = try loadCheckpoint(path, into: &state)
            #expect(state == saved)
            #expect(result.path == path)
            #expect(result.missingKeys.isEmpty && result.unexpectedKeys.isEmpty)
            #expect(result.rng == saved.rng[0])
            #expect(result.unmatchedIgnoreKeys.isEmpty)
        }
    }

    @Test func integerAndStringKeyWithTheSameDigitsAreRefused() throws {
        let tensor = StateValue.tensor(try Tensor(shape: [1], scalars: [Float(1)]))
        let tree: StateValue = ["state": .dict([.int(0): tensor, .string("0"): tensor])]
        try withTemporaryFolder { folder in
            let refusal = expectCheckpointError(.invalidArgument, messageContains: ["state/0"]) {
                try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors")
            }
            #expect(refusal?.path == nil || refusal?.path == folder + "/x.safetensors")
            let contents = try folderContents(folder)
            #expect(contents.isEmpty, "a refused save must leave nothing behind")
        }
    }

    /// Tensors are ordered so each is aligned to its element size in the file.
    @Test func everyTensorIsAlignedToItsElementSize() async {
        await propertyCheck(count: 20, input: Gen.uint64()) { seed in
            let tree: StateValue = seed % 4 == 0 ? RandomTree.everyDType(seed: seed) : RandomTree.make(seed: seed)
            try withTemporaryFolder { folder in
                let layout = try SafetensorsLayout(path: try save(tree, in: folder))
                #expect(layout.dataStart % 8 == 0, "the header is padded to a multiple of 8")
                #expect(layout.entries.count == tree.tensors.count)
                var end = 0
                for entry in layout.entries.values.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
                    let dtype = try #require(DType(safetensorsName: entry.dtype))
                    #expect(
                        (layout.dataStart + entry.begin) % dtype.byteSize == 0,
                        "\(entry.name) (\(entry.dtype)) starts at file offset \(layout.dataStart + entry.begin)")
                    #expect(entry.begin == end, "tensors tile the data buffer")
                    end = entry.end
                }
                #expect(layout.dataStart + end == layout.fileSize, "no trailing bytes")
            }
        }
    }
}
