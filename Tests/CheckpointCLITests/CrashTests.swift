import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A process killed in the middle of a save leaves the previous file intact and
/// nothing under the final name that was not completely written.
@Suite struct CrashTests {
    @Test func killedSaveLeavesThePreviousCheckpointIntact() throws {
        try withTemporaryFolder { folder in
            let target = folder + "/ckpt.safetensors"

            // The checkpoint that must survive.
            var previous = TrainingState(runName: "previous")
            previous.model["w"] = .tensor(try Tensor(shape: [4], scalars: [Float](repeating: 1.5, count: 4)))
            try saveCheckpoint(previous, filename: target)

            // A large source, so the child spends long enough writing to be caught in the act.
            let big = folder + "/big.safetensors"
            var large = TrainingState(runName: "large")
            for index in 0..<8 {
                large.model["layer\(index)"] = .tensor(
                    try Tensor(dtype: .float32, shape: [32 << 20]) { bytes in
                        bytes.initializeMemory(as: UInt8.self, repeating: UInt8(index + 1))
                    })
            }
            try saveCheckpoint(large, filename: big)

            let child = try CLI.start(["convert", big, target])
            var sawPartial = false
            let deadline = ContinuousClock.now + .seconds(60)
            while child.isRunning && ContinuousClock.now < deadline {
                let partials = try FileManager.default.contentsOfDirectory(atPath: folder)
                    .filter { $0.hasPrefix(".ckpt.safetensors.partial-") }
                if let partial = partials.first,
                    let size = try? FileManager.default.attributesOfItem(atPath: folder + "/" + partial)[.size] as? Int,
                    size > 64 << 20
                {
                    kill(child.processIdentifier, SIGKILL)
                    sawPartial = true
                    break
                }
                usleep(200)
            }
            child.waitUntilExit()
            try #require(sawPartial, "the child finished before it could be killed mid-save")
            #expect(child.terminationReason == .uncaughtSignal)

            // The final name still holds the previous checkpoint, complete and verified.
            let survivor = try CheckpointFile.open(target)
            try survivor.verify()
            let loaded = try loadCheckpoint(target)
            #expect(loaded == previous)
            // The half-written file never took the final name.
            #expect(survivor.byteCount < 1 << 20)

            // The next save of that name clears the dead process's temporary.
            #expect(try partials(in: folder).count == 1)
            try saveCheckpoint(large, filename: target)
            #expect(try partials(in: folder).isEmpty)
            #expect(try loadCheckpoint(target) == large)
        }
    }

    private func partials(in folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".partial-") }
    }
}
