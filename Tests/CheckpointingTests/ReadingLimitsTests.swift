import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// One set of reading limits for every reader, and one nesting depth for every format: what
/// loads can be saved in any format, and what one format refuses every format refuses, with
/// the same error.
@Suite struct ReadingLimitsTests {
    /// A dict nested `depth` levels: a tensor whose path has `depth` keys (`l0/l1/...`).
    static func nested(depth: Int) throws -> StateValue {
        var value = StateValue.tensor(try Tensor(shape: [2], scalars: [Float(1.5), -2]))
        for level in (0..<depth).reversed() { value = .dict(StateDict([(StateKey.string("l\(level)"), value)])) }
        return value
    }

    static let limit = ReadingLimits().maximumDepth

    @Test func theDefaultDepthIsTheDeepestEveryFormatHolds() {
        #expect(Self.limit == 150)
        #expect(Self.limit <= ReadingLimits.deepestSupportedDepth)
        #expect(TreeCoding.maximumDepth >= ReadingLimits.deepestSupportedDepth)
        #expect(TorchLimits().maximumDepth > ReadingLimits.deepestSupportedDepth)
    }

    /// A `.pt` nested exactly at the limit loads, converts to the native format, and the native
    /// file loads back equal; so does a DCP folder.
    @Test func aPtNestedAtTheLimitLoadsAndConvertsToNative() throws {
        try withTemporaryFolder { folder in
            let tree = try Self.nested(depth: Self.limit)
            let pt = try saveCheckpoint(tree: tree, filename: folder + "/deep.pt")[0]
            let loaded = try loadCheckpointTree(pt).tree
            #expect(loaded == tree)
            let native = try saveCheckpoint(tree: loaded, filename: folder + "/deep.safetensors")[0]
            #expect(try loadCheckpointTree(native).tree == tree)
            let dcp = try saveCheckpoint(tree: loaded, filename: folder + "/deep-dcp", format: .distributedCheckpoint)[0]
            #expect(try loadCheckpointTree(dcp).tree == tree)
        }
    }

    /// One level past the limit: the `.pt` (written with the limit raised) is refused by a load
    /// with the default limits, and the same tree is refused by a save to the native format, a
    /// `.pt`, a sharded save and a DCP save, every time with the same error.
    @Test func onePastTheLimitIsRefusedByLoadAndSaveWithTheSameError() throws {
        try withTemporaryFolder { folder in
            let tree = try Self.nested(depth: Self.limit + 1)
            var raised = ReadingLimits()
            raised.maximumDepth = Self.limit + 1
            let pt = try saveCheckpoint(tree: tree, filename: folder + "/deeper.pt", limits: raised)[0]

            let deepest = (0...Self.limit).map { "l\($0)" }.joined(separator: "/")
            let message = "the checkpoint tree is nested more than \(Self.limit) levels deep (at \"\(deepest)\")"
            let refusals = [
                expectCheckpointError(.limitExceeded, messageContains: [message, "--max-depth"]) { _ = try loadCheckpointTree(pt) },
                expectCheckpointError(.limitExceeded, messageContains: [message]) { _ = try CheckpointFile.open(pt) },
                expectCheckpointError(.limitExceeded, messageContains: [message]) {
                    try saveCheckpoint(tree: tree, filename: folder + "/deeper.safetensors")
                },
                expectCheckpointError(.limitExceeded, messageContains: [message]) {
                    try saveCheckpoint(tree: tree, filename: folder + "/again.pt")
                },
                expectCheckpointError(.limitExceeded, messageContains: [message]) {
                    try saveCheckpoint(tree: tree, filename: folder + "/dcp", format: .distributedCheckpoint)
                },
                expectCheckpointError(.limitExceeded, messageContains: [message]) {
                    try saveCheckpoint(tree: tree, filename: folder + "/shard-rank{rank}", sharding: Sharding())
                },
            ]
            #expect(Set(refusals.map { $0?.message }).count == 1, "one error for every format: \(refusals)")
            #expect(refusals[0]?.path == pt)
            #expect(try folderContents(folder) == ["deeper.pt"], "nothing else written")

            // Raised, the same limit lets it load and convert.
            let loaded = try loadCheckpointTree(pt, limits: raised).tree
            let native = try saveCheckpoint(tree: loaded, filename: folder + "/deeper.safetensors", limits: raised)[0]
            #expect(try loadCheckpointTree(native, limits: raised).tree == tree)
        }
    }

    @Test func aDepthPastWhatTheNativeFormatHoldsIsRefused() throws {
        var limits = ReadingLimits()
        limits.maximumDepth = ReadingLimits.deepestSupportedDepth + 1
        let tree = try Self.nested(depth: 3)
        expectCheckpointError(.invalidArgument, messageContains: ["maximumDepth", "\(ReadingLimits.deepestSupportedDepth)"]) {
            try limits.checkDepth(of: tree)
        }
    }

    @Test func theHeaderDirectoryAndMemoLimitsAreTheOnesGiven() throws {
        try withTemporaryFolder { folder in
            var state = TrainingState()
            state.model = ["a": .tensor(try Tensor(shape: [2], scalars: [Float(1), 2])), "b": .tensor(try Tensor(shape: [1], scalars: [Int64(3)]))]
            let native = try saveCheckpoint(state, filename: folder + "/small.safetensors")[0]
            // Written by torch, whose pickle memoizes every container.
            let pt = Fixtures.path("composer/ep1-ba4-rank0.pt")
            _ = try CheckpointFile.open(native)
            _ = try CheckpointFile.open(pt)

            var limits = ReadingLimits()
            limits.maximumHeaderBytes = 64
            expectCheckpointError(.limitExceeded, messageContains: ["maximumHeaderBytes", "--max-header-bytes"]) {
                _ = try CheckpointFile.open(native, limits: limits)
            }
            limits = ReadingLimits()
            limits.maximumDirectoryEntries = 2
            expectCheckpointError(.limitExceeded, messageContains: ["maximumDirectoryEntries", "--max-zip-entries"]) {
                _ = try loadCheckpoint(pt, limits: limits)
            }
            limits = ReadingLimits()
            limits.maximumMemoEntries = 1
            expectCheckpointError(.limitExceeded, messageContains: ["maximumMemoEntries", "--max-pickle-memo"]) {
                _ = try loadCheckpointTree(pt, limits: limits)
            }
        }
    }

    /// A saver resumes within its ``CheckpointSaver/Options/readingLimits`` and saves within
    /// them: a tree past the default depth saves and resumes when they are raised.
    @Test func theSaverReadsAndWritesWithinItsLimits() throws {
        try withTemporaryFolder { folder in
            var state = TrainingState(runName: "deep")
            state.model = ["w": .tensor(try Tensor(shape: [1], scalars: [Float(1)]))]
            state.extra["deep"] = try Self.nested(depth: Self.limit)  // state/deep/l0/... : past the limit
            var options = CheckpointSaver.Options(folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba")
            let refusing = try CheckpointSaver(options: options)
            try refusing.fitStart(state)
            state.timestamp.batch = 1
            expectCheckpointError(.limitExceeded, messageContains: ["--max-depth"]) { try refusing.batchEnd(state) }
            try refusing.close()

            options.readingLimits.maximumDepth = Self.limit + 2
            let saver = try CheckpointSaver(options: options)
            state.timestamp.batch = 0
            try saver.fitStart(state)
            state.timestamp.batch = 1
            try saver.batchEnd(state)
            try saver.close()
            var resumed = TrainingState(runName: "deep")
            resumed.model = state.model
            #expect(try CheckpointSaver(options: options).autoresume(into: &resumed) != nil)
            #expect(resumed.extra["deep"] == state.extra["deep"])
        }
    }
}
