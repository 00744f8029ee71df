public import ArgumentParser
import Checkpointing
import CheckpointingS3
import Logging

/// The `ckpt` command: inspect, verify, convert and benchmark checkpoints.
///
/// Exit codes: 0 success; 1 the operation failed (a damaged checkpoint, an I/O error, a
/// mismatch), with a one-line message on standard error; 2 `diff`: the checkpoints differ;
/// 64 bad usage.
public struct CheckpointCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ckpt",
        abstract: "Save, load, inspect and convert machine-learning training checkpoints.",
        discussion: """
            Exit codes: 0 success; 1 the operation failed (the message on standard error says \
            what and where); 2 `diff`: the checkpoints differ; 64 bad usage.
            """,
        subcommands: [
            InspectCommand.self, VerifyCommand.self, ConvertCommand.self, DiffCommand.self, LsCommand.self,
            BenchCommand.self, DemoCommand.self, DemoRunCommand.self,
        ]
    )

    public init() {}

    /// Runs `ckpt` with the process's arguments: the whole of the executable's `main`.
    public static func runMain() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        // s3:// paths work in every command; settings are read when one is first used.
        S3ObjectStore.register()
        do {
            var command = try parseAsRoot()
            try run(&command)
        } catch {
            exit(withError: error)
        }
    }

    /// Runs a command parsed by `parseAsRoot`, as `ckpt` does: a command with long work draws
    /// its progress on standard error while it runs (see ``CommandOutput``).
    public static func run(_ command: inout any ParsableCommand) throws {
        guard let reporting = command as? any ReportsProgress, let bar = ProgressBar.forStandardError(quiet: reporting.quiet) else {
            try command.run()
            return
        }
        try bar.makeReporter().reporting { try command.run() }
    }
}
