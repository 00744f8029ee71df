import BigInt
import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// A sink that only appends, as a compressor does: the torch writer must not need to seek.
private final class AppendOnlySink: ByteSink {
    var bytes: [UInt8] = []
    var position: Int { bytes.count }
    func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
}

/// The same tree with every duration rounded to whole microseconds, as a `.pt` file keeps it,
/// and every duration beyond `timedelta`'s range replaced by one second.
func torchRepresentable(_ value: StateValue) -> StateValue {
    switch value {
    case .duration(let duration):
        guard let parts = try? TimedeltaCoding.components(duration) else { return .duration(.seconds(1)) }
        let microseconds = (Int64(parts.days) * 86_400 + Int64(parts.seconds)) * 1_000_000 + Int64(parts.microseconds)
        return .duration(.microseconds(microseconds))
    case .dict(let dict): return .dict(dict.mapValues(torchRepresentable))
    case .list(let elements): return .list(elements.map(torchRepresentable))
    case .tuple(let elements): return .tuple(elements.map(torchRepresentable))
    default: return value
    }
}

/// Records an issue naming the first place two trees differ (never printing whole tensors).
func expectSameTree(_ actual: StateValue, _ expected: StateValue, at path: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    switch (actual, expected) {
    case (.dict(let a), .dict(let b)):
        guard a.keys == b.keys else {
            Issue.record("\(path): keys \(a.keys.prefix(8)) vs \(b.keys.prefix(8))", sourceLocation: sourceLocation)
            return
        }
        for (key, value) in a { expectSameTree(value, b[key]!, at: path + "/" + key.description, sourceLocation: sourceLocation) }
    case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
        guard a.count == b.count else {
            Issue.record("\(path): \(a.count) elements vs \(b.count)", sourceLocation: sourceLocation)
            return
        }
        for (index, (x, y)) in zip(a, b).enumerated() { expectSameTree(x, y, at: path + "/\(index)", sourceLocation: sourceLocation) }
    case (.tensor(let a), .tensor(let b)):
        guard a.dtype == b.dtype, a.shape == b.shape else {
            Issue.record("\(path): \(a) vs \(b)", sourceLocation: sourceLocation)
            return
        }
        let x = a.bytes, y = b.bytes
        if let first = zip(x, y).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("\(path): tensor bytes differ first at byte \(first) of \(x.count)", sourceLocation: sourceLocation)
        }
    default:
        if actual != expected {
            Issue.record("\(path): \(actual.kindName) \(String(describing: actual).prefix(80)) vs \(String(describing: expected).prefix(80))", sourceLocation: sourceLocation)
        }
    }
}

@Suite struct TorchRoundTripTests {
    @Test func composerFixtureSurvivesSwiftToPtToSwift() throws {
        try withTemporaryFolder { folder in
            let original = try CheckpointFile.open(Fixtures.path("composer/ep1-ba4-rank0.pt"))
            let state = try TrainingState(tree: original.tree)
            let path = try saveCheckpoint(state, filename: folder + "/{run_name}/ep{epoch}-ba{batch}.pt")[0]
            #expect(path == folder + "/fixture-run/ep1-ba4.pt")
            let reread = try CheckpointFile.open(path)
            try reread.verify()
            expectSameTree(reread.tree, original.tree)
            #expect(try TrainingState(tree: reread.tree) == state)
            // And through the native format and back.
            let native = try saveCheckpoint(tree: reread.tree, filename: folder + "/native.safetensors")[0]
            let again = try saveCheckpoint(tree: try CheckpointFile.open(native).tree, filename: folder + "/again.pt")[0]
            expectSameTree(try CheckpointFile.open(again).tree, original.tree)
            // Deterministic: the same tree gives the same bytes.
            let identical = try readBytes(again) == readBytes(path)
            #expect(identical)
        }
    }

    @Test func everyDTypeRoundTripsBetweenNativeAndPt() throws {
        try withTemporaryFolder { folder in
            let tree = RandomTree.everyDType(seed: 5)
            let pt = try saveCheckpoint(tree: tree, filename: folder + "/dtypes.pt")[0]
            expectSameTree(try CheckpointFile.open(pt).tree, tree)
            let native = try saveCheckpoint(tree: try CheckpointFile.open(pt).tree, filename: folder + "/dtypes.safetensors")[0]
            expectSameTree(try CheckpointFile.open(native).tree, tree)
            let back = try saveCheckpoint(tree: try CheckpointFile.open(native).tree, filename: folder + "/back.pt")[0]
            expectSameTree(try CheckpointFile.open(back).tree, tree)
            // The torch fixture of every dtype, through native and back to .pt.
            let fixture = try CheckpointFile.open(Fixtures.path("torch/all_dtypes.pt")).tree
            let fixtureNative = try saveCheckpoint(tree: fixture, filename: folder + "/fixture.safetensors")[0]
            let fixturePt = try saveCheckpoint(tree: try CheckpointFile.open(fixtureNative).tree, filename: folder + "/fixture.pt")[0]
            expectSameTree(try CheckpointFile.open(fixturePt).tree, fixture)
        }
    }

    @Test(arguments: 0..<12)
    func randomTreesRoundTrip(seed: Int) throws {
        try withTemporaryFolder { folder in
            let tree = torchRepresentable(RandomTree.make(seed: 0x7043 + UInt64(seed)))
            let path = try saveCheckpoint(tree: tree, filename: folder + "/tree.pt")[0]
            expectSameTree(try CheckpointFile.open(path).tree, tree)
        }
    }

    @Test func edgeCaseScalarsKeepTheirTypesAndBits() throws {
        try withTemporaryFolder { folder in
            let tree = torchRepresentable(RandomTree.edgeCases)
            let path = try saveCheckpoint(tree: tree, filename: folder + "/edge.pt")[0]
            let reread = try CheckpointFile.open(path).tree
            #expect(reread == tree)
            // Integer keys stay integers, tuples tuples, big integers exact.
            let dict = try #require(reread.dictValue)
            #expect(dict.keys.allSatisfy { if case .int = $0 { true } else { false } })
            #expect(dict.contains { $0.value == .int(BigInt(1) << 200) })
            #expect(dict.contains { $0.value == .tuple([.none]) })
        }
    }

    @Test func viewsAndSharedStoragesAreWrittenOnce() throws {
        try withTemporaryFolder { folder in
            let fixture = try CheckpointFile.open(Fixtures.path("torch/views_and_sharing.pt")).tree
            let path = try saveCheckpoint(tree: fixture, filename: folder + "/views.pt")[0]
            let file = try CheckpointFile.open(path)
            expectSameTree(file.tree, fixture)
            // base, row_slice, shared_a and shared_b view one storage; the gathered views, the
            // scalar and the empty tensor have their own.
            let archive = try ZipArchive(MappedFile(path: path))
            let storages = archive.entries.filter { $0.record.hasPrefix("data/") }
            #expect(storages.count == 6)
            #expect(storages.first?.size == 24 * 4)
            let base = try #require(file.tree[path: "base"]?.tensorValue)
            let shared = try #require(file.tree[path: "shared_b"]?.tensorValue)
            let distance = shared.withUnsafeBytes { b in base.withUnsafeBytes { Int(bitPattern: b.baseAddress) - Int(bitPattern: $0.baseAddress) } }
            #expect(distance == 8 * 4)
        }
    }

    @Test func tensorsOverlappingInMemoryShareOneStorage() throws {
        try withTemporaryFolder { folder in
            let floats = (0..<32).map(Float.init)
            let owner = try Tensor(shape: [32], scalars: floats)
            try owner.withUnsafeBytes { raw in
                let head = try Tensor(borrowing: UnsafeRawBufferPointer(rebasing: raw[0..<64]), dtype: .float32, shape: [4, 4])
                let tail = try Tensor(borrowing: UnsafeRawBufferPointer(rebasing: raw[32..<128]), dtype: .float32, shape: [24])
                let apart = try Tensor(borrowing: UnsafeRawBufferPointer(rebasing: raw[2..<6]), dtype: .uint8, shape: [4])
                let tree: StateValue = ["all": .tensor(owner), "head": .tensor(head), "tail": .tensor(tail), "copy": .tensor(owner), "bytes": .tensor(apart)]
                let path = try saveCheckpoint(tree: tree, filename: folder + "/shared.pt")[0]
                let archive = try ZipArchive(MappedFile(path: path))
                // One float storage for the four float tensors, one for the uint8 view (another dtype).
                #expect(archive.entries.filter { $0.record.hasPrefix("data/") }.map(\.size) == [128, 4])
                expectSameTree(try CheckpointFile.open(path).tree, tree)
            }
        }
    }

    @Test func numpyRngStateIsWrittenAsANumpyArray() throws {
        try withTemporaryFolder { folder in
            let original = try CheckpointFile.open(Fixtures.path("composer/ep1-ba4-rank0.pt")).tree
            let path = try saveCheckpoint(tree: original, filename: folder + "/rng.pt")[0]
            let archive = try ZipArchive(MappedFile(path: path))
            let pickle = archive.bytes(of: try #require(archive.entry("data.pkl")))
            let text = String(decoding: pickle, as: UTF8.self)
            #expect(text.contains("numpy._core.multiarray\n_reconstruct\n"))
            #expect(text.contains("datetime\ntimedelta\n"))
            // The key array is inside the pickle, not a storage record.
            let storageSizes = archive.entries.filter { $0.record.hasPrefix("data/") }.map(\.size)
            #expect(!storageSizes.contains(624 * 4))
            expectSameTree(try CheckpointFile.open(path).tree, original)
        }
    }

    @Test func durationsAreRoundedToMicrosecondsAndBoundedByTimedelta() throws {
        try withTemporaryFolder { folder in
            let tree: StateValue = [
                "exact": .duration(.microseconds(-1_234_567)), "half_up": .duration(.nanoseconds(1500)),
                "half_even": .duration(.nanoseconds(2500)), "below": .duration(.nanoseconds(-499)),
                "days": .duration(.seconds(86_400 * 3 + 7)),
            ]
            let path = try saveCheckpoint(tree: tree, filename: folder + "/durations.pt")[0]
            let reread = try CheckpointFile.open(path).tree
            #expect(reread[path: "exact"] == .duration(.microseconds(-1_234_567)))
            #expect(reread[path: "half_up"] == .duration(.microseconds(2)))
            #expect(reread[path: "half_even"] == .duration(.microseconds(2)))
            #expect(reread[path: "below"] == .duration(.zero))
            #expect(reread[path: "days"] == .duration(.seconds(86_400 * 3 + 7)))
            expectCheckpointError(.invalidArgument, messageContains: ["timedelta", "too_long"]) {
                _ = try saveCheckpoint(tree: ["too_long": .duration(.seconds(Int64.max / 2))], filename: folder + "/long.pt")
            }
            #expect(try folderContents(folder) == ["durations.pt"])
        }
    }

    @Test func writerStreamsToASinkThatCannotSeek() throws {
        try withTemporaryFolder { folder in
            let tree = composerLikeState().tree
            let path = try saveCheckpoint(tree: tree, filename: folder + "/file.pt")[0]
            let sink = AppendOnlySink()
            let layout = try TorchFormat.layout(tree)
            try TorchFormat.write(layout, to: sink)
            #expect(sink.bytes.count == TorchFormat.size(of: layout))
            let written = try readBytes(path)
            #expect(sink.bytes.count == written.count)
            let firstDifference = zip(sink.bytes, written).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(firstDifference == nil, "streamed bytes differ from the file")
        }
    }

    @Test func weightsOnlyAndIgnoreKeysWorkForPt() throws {
        try withTemporaryFolder { folder in
            let state = try TrainingState(tree: CheckpointFile.open(Fixtures.path("composer/ep1-ba4-rank0.pt")).tree)
            let weights = try saveCheckpoint(state, filename: folder + "/weights.pt", weightsOnly: true)[0]
            let tree = try CheckpointFile.open(weights).tree
            #expect(tree.dictValue?.keys.map(\.description) == ["state"])
            #expect(tree[path: "state"]?.dictValue?.keys.map(\.description) == ["model", "integrations", "metadata"])
            var resumed = TrainingState(model: state.model)
            try loadCheckpoint(weights, into: &resumed, weightsOnly: true)
            #expect(resumed.model == state.model)
            let trimmed = try saveCheckpoint(state, filename: folder + "/trimmed.pt", ignoreKeys: ["state/optimizers/*", "rng"])[0]
            let loaded = try loadCheckpoint(trimmed)
            #expect(loaded.optimizers.isEmpty)
            #expect(loaded.rng.isEmpty)
            #expect(loaded.model == state.model)
        }
    }

    @Test func zip64FieldsAreWrittenAndReadWhereTorchNeedsThem() throws {
        // Files past 4 GiB are too slow for a unit test: force the zip64 forms on a small file
        // instead, and check the layout arithmetic for real sizes separately.
        try withTemporaryFolder { folder in
            let tree = RandomTree.everyDType(seed: 9)
            let layout = try TorchFormat.layout(tree)
            var forced = layout
            forced.zip = ZipPlan(layout.zip.records.map { (String(decoding: $0.name, as: UTF8.self), $0.size) }, zip64Threshold: 0)
            let sink = AppendOnlySink()
            try TorchFormat.write(forced, to: sink)
            #expect(sink.bytes.count == forced.zip.totalSize)
            let path = folder + "/zip64.pt"
            try writeBytes(sink.bytes, to: path)
            expectSameTree(try CheckpointFile.open(path).tree, tree)
            try CheckpointFile.open(path).verify()
        }
        let big = ZipPlan([("archive/data.pkl", 100), ("archive/data/0", 5 << 30), ("archive/data/1", 10), ("archive/version", 2)])
        let records = big.records
        #expect(records.allSatisfy { $0.dataOffset % 64 == 0 })
        #expect(records[0].descriptorSize == 16 && !records[0].zip64Sizes)
        #expect(records[1].zip64Sizes && !records[1].zip64Offset && records[1].descriptorSize == 24)
        #expect(records[2].zip64Offset && !records[2].zip64Sizes && records[2].descriptorSize == 24)
        #expect(records[2].localHeaderOffset == records[1].dataOffset + (5 << 30) + 24)
        #expect(big.centralDirectoryOffset == records[3].end)
    }
}
