import ArgumentParser
import CheckpointDemo
import Checkpointing

/// `ckpt demo [--folder DIR] [--batches N]`: a real training run that survives a crash
/// (``CrashResumeDemo``): exit 0 only when the resumed run's final state is bit-identical to
/// an uninterrupted run's.
///
/// Exit codes: 0 identical; 1 a difference or an error; 143 stopped by SIGTERM after saving.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Train a small model with checkpoints, crash it, resume it, and check it is bit-identical.")

    @Option(help: "Folder for the run's checkpoints.")
    var folder = "ckpt-demo"

    @Option(help: "Batches to train (20 per epoch).")
    var batches = 100

    @Option(help: "Save every this many batches.")
    var saveEvery = 10

    @Option(help: "Checkpoints to keep.")
    var keep = 3

    func validate() throws {
        guard batches >= 2 else { throw ValidationError("--batches must be at least 2") }
        guard saveEvery >= 1 else { throw ValidationError("--save-every must be at least 1") }
        guard keep >= 1 else { throw ValidationError("--keep must be at least 1") }
    }

    func run() throws {
        do {
            try CrashResumeDemo(folder: folder, batches: batches, saveEvery: saveEvery, keep: keep).run { print($0) }
        } catch let error as CheckpointError where error.code == .terminated {
            printError("ckpt demo: \(error.message)")
            throw ExitCode(143)
        }
    }
}
