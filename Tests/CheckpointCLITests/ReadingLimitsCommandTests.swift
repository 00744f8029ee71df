import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

/// The commands that read take every ``ReadingLimits`` bound as a flag; `convert` writes within
/// the same depth it reads.
@Suite struct ReadingLimitsCommandTests {
    static func nested(depth: Int) throws -> StateValue {
        var value = StateValue.tensor(try Tensor(shape: [2], scalars: [Float(1.5), -2]))
        for level in (0..<depth).reversed() { value = .dict(StateDict([(StateKey.string("l\(level)"), value)])) }
        return value
    }

    @Test func convertReadsAndWritesWithinMaxDepth() throws {
        try withTemporaryFolder { folder in
            let limit = ReadingLimits().maximumDepth
            let atLimit = try saveCheckpoint(tree: Self.nested(depth: limit), filename: folder + "/at.pt")[0]
            let converted = try CLI.run(["convert", atLimit, folder + "/at.safetensors"])
            #expect(converted.status == 0, "\(converted.stderr)")

            var raised = ReadingLimits()
            raised.maximumDepth = limit + 1
            let deeper = try Self.nested(depth: limit + 1)
            let past = try saveCheckpoint(tree: deeper, filename: folder + "/past.pt", limits: raised)[0]
            for command in [["verify", past], ["inspect", past], ["convert", past, folder + "/past.safetensors"]] {
                let refused = try CLI.run(command)
                #expect(refused.status == 1 && refused.stderr.contains("nested more than \(limit) levels deep"), "\(command): \(refused.stderr)")
                #expect(refused.stderr.contains("--max-depth"), "\(refused.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: folder + "/past.safetensors"))

            let allowed = try CLI.run(["convert", "--max-depth", "\(limit + 1)", past, folder + "/past.safetensors"])
            #expect(allowed.status == 0, "\(allowed.stderr)")
            #expect(try loadCheckpointTree(folder + "/past.safetensors", limits: raised).tree == deeper)

            let badFlag = try CLI.run(["verify", "--max-depth", "\(ReadingLimits.deepestSupportedDepth + 1)", past])
            #expect(badFlag.status == 64 && badFlag.stderr.contains("--max-depth must be between"), "\(badFlag.stderr)")
        }
    }
}
