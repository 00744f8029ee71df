import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

/// `ckpt diff`: identical checkpoints across formats, and every kind of difference.
@Suite struct DiffCommandTests {
    @Test func theSameCheckpointInTwoContainersIsIdentical() throws {
        let run = CLI.run(["diff", Fixtures.path("composer/ep1-ba4-rank0.pt"), Fixtures.path("composer/ep1-ba4-rank0.tar.gz")])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.hasPrefix("identical: 18 tensors"), "\(run.stdout)")
    }

    @Test func everyKindOfDifferenceIsListedAndExitsTwo() throws {
        try withTemporaryFolder { folder in
            var state = try CommandTests.sampleState()
            state.model["half"] = .tensor(try Tensor(dtype: .float16, shape: [3], bytes: [0x00, 0x3C, 0x00, 0x40, 0x00, 0x42]))  // 1, 2, 3
            let a = try saveCheckpoint(state, filename: folder + "/a.safetensors")[0]

            var changed = state
            var weights = try state.model["fc.weight"]!.tensorValue!.scalars(as: Float.self)
            weights[1] += 1.5
            weights[4] -= 0.25
            changed.model["fc.weight"] = .tensor(try Tensor(shape: [2, 3], scalars: weights))
            changed.model["half"] = .tensor(try Tensor(dtype: .float16, shape: [3], bytes: [0x00, 0x3C, 0x00, 0x45, 0x00, 0x42]))  // 1, 5, 3
            changed.model["fc.bias"] = .tensor(try Tensor(shape: [3], scalars: [Double(0.5), -0.25, 1]))
            changed.model["extra"] = .tensor(try Tensor(shape: [1], scalars: [Int32(7)]))
            changed.timestamp.batch = 41
            let b = try saveCheckpoint(changed, filename: folder + "/b.pt")[0]

            let run = CLI.run(["diff", a, b])
            #expect(run.status == 2, "\(run.stderr)")
            let lines = run.stdout.split(separator: "\n").map(String.init)
            #expect(lines.contains("~ state/model/fc.weight: 2 of 6 elements differ, largest |A - B| = 1.5"), "\(run.stdout)")
            #expect(lines.contains("~ state/model/half: 1 of 3 elements differ, largest |A - B| = 3.0"), "\(run.stdout)")
            #expect(lines.contains("~ state/model/fc.bias: float64 [2] in A, float64 [3] in B"), "\(run.stdout)")
            #expect(lines.contains("+ state/model/extra: only in B, tensor"), "\(run.stdout)")
            #expect(lines.contains("~ state/timestamp/Timestamp/batch: 40 in A, 41 in B"), "\(run.stdout)")
            #expect(lines.last?.hasPrefix("5 differences (compared 4 tensors") == true, "\(run.stdout)")
        }
    }
}
