import ArgumentParser
import CheckpointDemo
import Checkpointing
import Foundation

/// `ckpt demo-run`: one run of the demo's training in a folder, as a preemptible job runs it:
/// it resumes from the folder's newest checkpoint (or starts), trains to `--until` with
/// periodic checkpoints, and ends with a final one. Hidden: the kill-loop test starts it
/// again and again and SIGKILLs it at random moments.
///
/// It prints, each line written at once (a killed process loses nothing it printed), the
/// checkpoints in the folder before and after autoresume, where it resumed and a digest of
/// its state there (``DemoRun/digest``), and the digest at the end, so the test can check
/// every resume bit for bit against an uninterrupted run.
struct DemoRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-run",
        abstract: "One resumable run of the demo's training (for the kill-loop test).",
        shouldDisplay: false)

    @Option(help: "Folder for the run's checkpoints.")
    var folder: String

    @Option(help: "The run's length in batches (its learning-rate schedule).")
    var batches = 100

    @Option(help: "Stop at this batch, with a final checkpoint (default: --batches).")
    var until: Int?

    @Option(help: "Save every this many batches.")
    var saveEvery = 2

    @Option(help: "Checkpoints to keep.")
    var keep = 3

    @Flag(help: "Save in the background.")
    var asynchronous = false

    @Option(help: "Bytes saved with every checkpoint besides the model, to make saves longer.")
    var ballast = 0

    func validate() throws {
        guard batches >= 1, saveEvery >= 1, keep >= 1, ballast >= 0 else {
            throw ValidationError("--batches, --save-every and --keep must be positive and --ballast not negative")
        }
    }

    func run() throws {
        var run = DemoRun(seed: 2026, totalBatches: batches)
        if ballast > 0 {
            run.ballast = try Tensor(dtype: .uint8, shape: [ballast]) { bytes in
                for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
            }
        }
        let checkpoints = folder + "/" + DemoRun.runName + "/checkpoints"
        print("checkpoints before autoresume: \(Self.checkpointCount(in: checkpoints))")
        let saver = try CheckpointSaver(options: CheckpointSaver.Options(
            folder: folder + "/{run_name}/checkpoints", filename: "ep{epoch}-ba{batch:04d}-rank{rank}.safetensors",
            saveInterval: .every(TrainingTime(Double(saveEvery), .batch)), checkpointsToKeep: keep,
            asynchronous: asynchronous))
        var state = run.state
        if let resumed = try saver.autoresume(into: &state) {
            try run.restore(state)
            print("resumed from \(resumed.path) at batch \(run.timestamp.batch) digest \(try run.digest)")
        } else {
            try saver.fitStart(state)
            print("fresh start digest \(try run.digest)")
        }
        print("checkpoints after autoresume: \(Self.checkpointCount(in: checkpoints))")
        try run.train(until: until ?? batches, saver: saver)
        try saver.fitEnd(run.state)
        print("finished at batch \(run.timestamp.batch) digest \(try run.digest)")
    }

    private static func checkpointCount(in folder: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { !$0.hasPrefix(".") && $0.hasSuffix(".safetensors") }.count
    }
}
