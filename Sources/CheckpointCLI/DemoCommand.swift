import ArgumentParser
import Checkpointing
import Foundation

/// `ckpt demo [--folder DIR] [--batches N]`: a real training run that survives a crash.
///
/// A small MLP trains with AdamW, a learning-rate schedule, dropout and a shuffling loader,
/// checkpointing every 10 batches and keeping the newest 3. Partway through, the run stops
/// abruptly (a simulated crash: the process's state is dropped without a final save). A new
/// run in the same folder resumes through autoresume and finishes. Its final weights and
/// optimizer state are compared with an uninterrupted run's: exit 0 only when they are
/// bit-identical. Run it again in the same folder and it resumes from what is there.
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
        let seed: UInt64 = 2026
        let crashAt = batches * 3 / 5 + saveEvery / 2
        do {
            // 1. The interrupted run: synchronous saves, stopped abruptly at `crashAt`.
            var first = DemoRun(seed: seed, totalBatches: batches)
            let firstSaver = try CheckpointSaver(options: options(asynchronous: false))
            var state = first.state
            if let resumed = try firstSaver.autoresume(into: &state) {
                try first.restore(state)
                print("found checkpoints: resumed from \(resumed.path) at batch \(first.timestamp.batch)")
            } else {
                try firstSaver.fitStart(state)
            }
            if first.timestamp.batch < crashAt {
                try first.train(until: crashAt, saver: firstSaver)
                print("batch \(first.timestamp.batch): simulated crash (no final save; the state in memory is lost)")
            }
            try firstSaver.waitForPendingSave()
            let syncStatistics = try firstSaver.statistics

            // 2. A new process resumes in the same folder: asynchronous saves this time.
            var second = DemoRun(seed: seed, weightsSeed: 99, totalBatches: batches)  // other initial weights
            let saver = try CheckpointSaver(options: options(asynchronous: true))
            state = second.state
            guard let resumed = try saver.autoresume(into: &state) else {
                throw CommandFailure("autoresume found no checkpoint in \(folder)")
            }
            try second.restore(state)
            print("autoresume: resumed from \(resumed.path) at batch \(second.timestamp.batch)")
            try second.train(until: batches, saver: saver)
            try saver.fitEnd(second.state)
            try second.settle()
            let asyncStatistics = try saver.statistics

            // 3. The uninterrupted reference run.
            var reference = DemoRun(seed: seed, totalBatches: batches)
            try reference.train(until: batches, saver: nil)

            report(second: second, reference: reference, kept: try saver.keptCheckpoints,
                   sync: syncStatistics, async: asyncStatistics)
            let (final, expected) = (second.state, reference.state)
            guard final.model == expected.model, final.optimizers == expected.optimizers,
                final.datasetState == expected.datasetState, final.rng == expected.rng
            else {
                throw CommandFailure("FAIL: the resumed run's final state differs from the uninterrupted run's")
            }
            print("OK: final weights and optimizer state are bit-identical to the uninterrupted run")
        } catch let error as CheckpointError where error.code == .terminated {
            FileHandle.standardError.write(Data("ckpt demo: \(error.message)\n".utf8))
            throw ExitCode(143)
        }
    }

    private func options(asynchronous: Bool) -> CheckpointSaver.Options {
        CheckpointSaver.Options(
            folder: folder + "/{run_name}/checkpoints",
            filename: "ep{epoch}-ba{batch:04d}-rank{rank}.safetensors",
            saveInterval: .every(TrainingTime(Double(saveEvery), .batch)),
            checkpointsToKeep: keep, asynchronous: asynchronous, saveOnTermination: true)
    }

    private func report(
        second: DemoRun, reference: DemoRun, kept: [String], sync: CheckpointSaver.Statistics,
        async: CheckpointSaver.Statistics
    ) {
        print("")
        print("loss (reference run / resumed run, where it trained):")
        for (batch, loss) in reference.losses {
            let resumed = second.losses.first { $0.batch == batch }.map { String(format: "%.4f", $0.loss) } ?? "-"
            print(String(format: "  batch %4d  %.4f  %@", batch, loss, resumed))
        }
        print("checkpoints kept (newest \(keep)):")
        for path in kept { print("  \(path)") }
        func line(_ name: String, _ statistics: CheckpointSaver.Statistics) -> String {
            String(
                format: "  %@: %d saves, %@, training loop stalled %.1f ms, writing took %.1f ms", name,
                statistics.saves, Units.bytes(statistics.bytesWritten), statistics.stall.milliseconds,
                statistics.writing.milliseconds)
        }
        print("saving:")
        print(line("synchronous (before the crash)", sync))
        print(line("asynchronous (after the resume)", async))
    }
}

extension Duration {
    var milliseconds: Double { seconds * 1000 }
}
