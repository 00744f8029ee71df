import Checkpointing
import CheckpointToolSupport
import Foundation
import Synchronization

/// Draws a ``CheckpointProgress``'s updates as one line on standard error, redrawn in place:
/// the phase, the part done, a bar, bytes done of the total, the rate and the time left.
/// The line is cleared when the phase ends, so what the command prints is left as it was.
final class ProgressBar: Sendable {
    private struct Drawing {
        var phase = ""
        var phaseStart = ContinuousClock.now
    }

    private let output: CommandOutput
    private let drawing = Mutex(Drawing())

    /// A bar for the commands' standard error, or `nil` when none is drawn: with `--quiet`, when
    /// standard error is no terminal, and on every rank but 0 of a multi-process run.
    static func forStandardError(quiet: Bool) -> ProgressBar? {
        let output = CommandOutput.current
        guard !quiet, output.standardErrorIsTerminal() else { return nil }
        guard ((try? LaunchEnvironment.detect().rank) ?? 0) == 0 else { return nil }
        return ProgressBar(output: output)
    }

    private init(output: CommandOutput) {
        self.output = output
    }

    /// A reporter whose updates this bar draws.
    func makeReporter() -> CheckpointProgress {
        CheckpointProgress { [self] update in draw(update) }
    }

    func draw(_ update: CheckpointProgress.Update) {
        let now = ContinuousClock.now
        let line: String = drawing.withLock { state in
            if update.phase != state.phase || update.completedBytes == 0 {
                state = Drawing(phase: update.phase, phaseStart: now)
            }
            if update.isFinished { return "\r\u{1B}[2K" }
            return "\r\u{1B}[2K" + Self.line(update, seconds: (now - state.phaseStart).seconds)
        }
        output.standardError(line)
    }

    /// `verifying   42% [========>           ]  630.00 MB / 1.49 GB  410.3 MB/s  ETA 2s`
    static func line(_ update: CheckpointProgress.Update, seconds: Double, width: Int = 24) -> String {
        let fraction = update.fraction
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "")
            + String(repeating: " ", count: max(0, width - filled - 1))
        var text = update.phase.padding(toLength: 13, withPad: " ", startingAt: 0)
            + String(format: "%3d%% [%@]  %@ / %@", Int(fraction * 100), bar, Units.bytes(update.completedBytes), Units.bytes(update.totalBytes))
        if seconds > 0.05, update.completedBytes > 0 {
            let rate = Double(update.completedBytes) / seconds
            text += String(format: "  %.1f MB/s", rate / 1e6)
            let left = Double(max(0, update.totalBytes - update.completedBytes)) / rate
            text += "  ETA " + duration(left)
        }
        return text
    }

    /// `7s`, `3m05s`, `2h04m`.
    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return String(format: "%dm%02ds", whole / 60, whole % 60) }
        return String(format: "%dh%02dm", whole / 3600, whole / 60 % 60)
    }
}
