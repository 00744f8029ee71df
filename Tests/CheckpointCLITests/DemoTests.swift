import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct DemoTests {
    /// The README's main job: run twice in one folder, both times bit-identical, the second
    /// resuming from what the first left.
    @Test func demoRunsTwiceInOneFolder() throws {
        try withTemporaryFolder { folder in
            let first = try CLI.runProcess(["demo", "--folder", folder])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout.contains("simulated crash"))
            #expect(first.stdout.contains("autoresume: resumed from \(folder)/demo-run/checkpoints/ep2-ba0060-rank0.safetensors at batch 60"))
            #expect(first.stdout.contains("OK: final weights and optimizer state are bit-identical"))

            let second = try CLI.runProcess(["demo", "--folder", folder])
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stdout.contains("resumed from \(folder)/demo-run/checkpoints/ep4-ba0100-rank0.safetensors at batch 100"))
            #expect(second.stdout.contains("OK: final weights and optimizer state are bit-identical"))

            let checkpoints = try FileManager.default.contentsOfDirectory(atPath: folder + "/demo-run/checkpoints")
            #expect(checkpoints.filter { $0.hasSuffix(".safetensors") }.sorted() == [
                "ep3-ba0080-rank0.safetensors", "ep4-ba0090-rank0.safetensors", "ep4-ba0100-rank0.safetensors",
            ])
        }
    }

    @Test func lsShowsCheckpointsAndTheLatest() throws {
        try withTemporaryFolder { folder in
            #expect(try CLI.runProcess(["demo", "--folder", folder, "--batches", "40"]).status == 0)
            let run = CLI.run(["ls", folder + "/demo-run/checkpoints", "--json", "--verify"])
            #expect(run.status == 0, "\(run.stderr)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            let entries = try #require(object["checkpoints"] as? [[String: Any]])
            #expect(entries.map { $0["name"] as? String } == [
                "ep0-ba0020-rank0.safetensors", "ep1-ba0030-rank0.safetensors", "ep1-ba0040-rank0.safetensors",
            ])
            #expect(entries.map { $0["batch"] as? Int } == [20, 30, 40])
            #expect(entries.allSatisfy { $0["complete"] as? Bool == true && $0["format"] as? String == "native" })
            #expect(entries.map { $0["latest"] as? Bool } == [false, false, true])

            // A damaged file is listed as incomplete with --verify.
            let damaged = folder + "/demo-run/checkpoints/ep1-ba0030-rank0.safetensors"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: damaged))
            bytes[bytes.count - 1] ^= 1
            try bytes.write(to: URL(fileURLWithPath: damaged))
            let text = CLI.run(["ls", folder + "/demo-run/checkpoints", "--verify"])
            #expect(text.stdout.contains("NO: tensor"))
        }
    }

    /// SIGTERM mid-training: the run saves where it is and stops with status 143.
    @Test func sigtermSavesALoadableCheckpointBeforeExiting() throws {
        try withTemporaryFolder { folder in
            let errors = Pipe()
            let child = try CLI.start(["demo", "--folder", folder, "--batches", "200000", "--save-every", "1000"], stderr: errors)
            let ledger = folder + "/demo-run/checkpoints/.checkpoints-rank0.json"
            let deadline = ContinuousClock.now + .seconds(120)
            while !FileManager.default.fileExists(atPath: ledger) && child.isRunning && ContinuousClock.now < deadline {
                usleep(10_000)
            }
            try #require(child.isRunning, "the demo stopped before it could be signalled")
            kill(child.processIdentifier, SIGTERM)
            child.waitUntilExit()
            #expect(child.terminationStatus == 143)
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(message.contains("SIGTERM received: saved \(folder)/demo-run/checkpoints/"), "\(message)")

            // The checkpoint saved on SIGTERM is the latest, and it loads.
            let latest = try FileManager.default.destinationOfSymbolicLink(atPath: folder + "/demo-run/checkpoints/latest-rank0")
            #expect(message.contains(latest))
            let state = try loadCheckpoint(folder + "/demo-run/checkpoints/" + latest)
            #expect(state.timestamp.batch >= 1000)
        }
    }
}
