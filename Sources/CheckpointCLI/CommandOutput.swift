import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the commands write: the process's standard output and standard error, unless a
/// caller running a command in-process (a test, a program embedding `ckpt`) binds its own.
///
/// ```swift
/// var command = try CheckpointCommand.parseAsRoot(["verify", path])
/// try CommandOutput.$current.withValue(CommandOutput(standardOutput: { out += $0 }, standardError: { err += $0 })) {
///     try command.run()
/// }
/// ```
public struct CommandOutput: Sendable {
    /// Receives text for standard output, each piece ending in a newline.
    public var standardOutput: @Sendable (String) -> Void
    /// Receives text for standard error: lines, and a progress bar's redrawing.
    public var standardError: @Sendable (String) -> Void
    /// Whether standard error is a terminal, where a progress bar is drawn.
    public var standardErrorIsTerminal: @Sendable () -> Bool

    /// Output to the given receivers; a progress bar is drawn on `standardError` only when
    /// `standardErrorIsTerminal` says so (by default, never).
    public init(
        standardOutput: @escaping @Sendable (String) -> Void, standardError: @escaping @Sendable (String) -> Void,
        standardErrorIsTerminal: @escaping @Sendable () -> Bool = { false }
    ) {
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.standardErrorIsTerminal = standardErrorIsTerminal
    }

    /// The process's own streams, each line written at once: a killed process loses nothing it
    /// printed, and lines on standard output and standard error keep their order.
    public static let process = CommandOutput(
        standardOutput: { FileHandle.standardOutput.write(Data($0.utf8)) },
        standardError: { FileHandle.standardError.write(Data($0.utf8)) },
        standardErrorIsTerminal: { isatty(STDERR_FILENO) == 1 })

    /// The output of the commands running in this task (or thread).
    @TaskLocal public static var current = CommandOutput.process
}

/// Writes a line to the command's standard output. Every command prints through this, which
/// shadows the standard library's `print` in this module, so in-process runs capture it.
func print(_ line: String) {
    CommandOutput.current.standardOutput(line + "\n")
}

/// Writes a line to the command's standard error.
func printError(_ line: String) {
    CommandOutput.current.standardError(line + "\n")
}
