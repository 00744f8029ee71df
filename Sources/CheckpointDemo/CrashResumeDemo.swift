import Checkpointing
import CheckpointToolSupport
import Foundation

/// The demo (`ckpt demo`): a real training run that survives a crash.
///
/// A small MLP trains with AdamW, a learning-rate schedule, dropout and a shuffling loader,
/// checkpointing every `saveEvery` batches and keeping the newest `keep`. Partway through, the
/// run stops abruptly (a simulated crash: the process's state is dropped without a final save).
/// A new run in the same folder resumes through autoresume and finishes. Its final weights and
/// optimizer state are compared with an uninterrupted run's. Run it again in the same folder and
/// it resumes from what is there.
public struct CrashResumeDemo {
    let folder: String
    let batches: Int
    let saveEvery: Int
    let keep: Int

    /// A demo in `folder` of `batches` batches (20 per epoch), saving every `saveEvery` and
    /// keeping `keep` checkpoints.
    public init(folder: String, batches: Int, saveEvery: Int, keep: Int) {
        self.folder = folder
        self.batches = batches
        self.saveEvery = saveEvery
        self.keep = keep
    }

    /// Runs the demo, handing each line of its report to `say`.
    ///
    /// - Throws: ``CommandFailure`` when the resumed run's final state differs from the
    ///   uninterrupted run's; a `CheckpointError` with code `.terminated` when SIGTERM stopped
    ///   it after saving; any error of the saves and loads.
    public func run(say: (String) -> Void) throws {
        let seed: UInt64 = 2026
        let crashAt = batches * 3 / 5 + saveEvery / 2
        // 1. The interrupted run: synchronous saves, stopped abruptly at `crashAt`.
        var first = DemoRun(seed: seed, totalBatches: batches)
        let firstSaver = try CheckpointSaver(options: options(asynchronous: false))
        var state = first.state
        if let resumed = try firstSaver.autoresume(into: &state) {
            try first.restore(state)
            say("found checkpoints: resumed from \(resumed.path) at batch \(first.timestamp.batch)")
        } else {
            try firstSaver.fitStart(state)
        }
        if first.timestamp.batch < crashAt {
            try first.train(until: crashAt, saver: firstSaver)
            say("batch \(first.timestamp.batch): simulated crash (no final save; the state in memory is lost)")
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
        say("autoresume: resumed from \(resumed.path) at batch \(second.timestamp.batch)")
        try second.train(until: batches, saver: saver)
        try saver.fitEnd(second.state)
        try second.settle()
        let asyncStatistics = try saver.statistics

        // 3. The uninterrupted reference run.
        var reference = DemoRun(seed: seed, totalBatches: batches)
        try reference.train(until: batches, saver: nil)

        report(
            second: second, reference: reference, kept: try saver.keptCheckpoints, sync: syncStatistics,
            async: asyncStatistics, say: say)
        let (final, expected) = (second.state, reference.state)
        guard final.model == expected.model, final.optimizers == expected.optimizers,
            final.datasetState == expected.datasetState, final.rng == expected.rng
        else {
            throw CommandFailure("FAIL: the resumed run's final state differs from the uninterrupted run's")
        }
        say("OK: final weights and optimizer state are bit-identical to the uninterrupted run")
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
        async: CheckpointSaver.Statistics, say: (String) -> Void
    ) {
        say("")
        say("loss (reference run / resumed run, where it trained):")
        for (batch, loss) in reference.losses {
            let resumed = second.losses.first { $0.batch == batch }.map { String(format: "%.4f", $0.loss) } ?? "-"
            say(String(format: "  batch %4d  %.4f  %@", batch, loss, resumed))
        }
        say("checkpoints kept (newest \(keep)):")
        for path in kept { say("  \(path)") }
        func line(_ name: String, _ statistics: CheckpointSaver.Statistics) -> String {
            String(
                format: "  %@: %d saves, %@, training loop stalled %.1f ms, writing took %.1f ms", name,
                statistics.saves, Units.bytes(statistics.bytesWritten), statistics.stall.milliseconds,
                statistics.writing.milliseconds)
        }
        say("saving:")
        say(line("synchronous (before the crash)", sync))
        say(line("asynchronous (after the resume)", async))
    }
}
