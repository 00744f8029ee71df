import ArgumentParser

/// `--quiet`: no progress bar. Without it, a command whose work is long draws one on standard
/// error when standard error is a terminal (never into a file or a pipe).
struct ProgressOptions: ParsableArguments {
    @Flag(name: [.short, .long], help: "Draw no progress bar (one is drawn on standard error when it is a terminal).")
    var quiet = false
}

/// A command whose long work (saving, verifying, decompressing, uploading, downloading)
/// reports its progress: ``CheckpointCommand/run(_:)`` draws it while the command runs.
protocol ReportsProgress {
    /// Whether `--quiet` was given.
    var quiet: Bool { get }
}
