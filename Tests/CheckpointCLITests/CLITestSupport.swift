import ArgumentParser
import CheckpointCLI
import CheckpointingTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a run of `ckpt` printed, and its exit status.
struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum CLI {
    /// The folder of the build products: the test runner lives there, beside `ckpt`.
    static var productsFolder: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    static var executable: URL {
        let beside = productsFolder.appendingPathComponent("ckpt")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return Fixtures.packageRoot.appendingPathComponent(".build/debug/ckpt")
    }

    /// Starts `ckpt` with `arguments`; the caller waits or kills it.
    static func start(
        _ arguments: [String], environment: [String: String] = [:], stdout: Pipe = Pipe(), stderr: Pipe = Pipe()
    ) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdout
        process.standardError = stderr
        try launchWithEmptySignalMask(process)
        return process
    }

    /// Launches `process` from a thread that blocks no signal, so that it starts with an empty
    /// signal mask, as from a shell: a child inherits the mask of the thread that spawns it,
    /// and the tests' threads (Dispatch workers) block most signals, SIGTERM among them.
    private static func launchWithEmptySignalMask(_ process: Process) throws {
        let outcome = Mutex<Result<Void, any Error>>(.success(()))
        let launched = DispatchSemaphore(value: 0)
        let launch = UncheckedProcess(process: process)
        let thread = Thread {
            var empty = sigset_t()
            sigemptyset(&empty)
            pthread_sigmask(SIG_SETMASK, &empty, nil)
            let result = Result { try launch.process.run() }
            outcome.withLock { $0 = result }
            launched.signal()
        }
        thread.start()
        launched.wait()
        try outcome.withLock { $0 }.get()
    }

    /// Runs `ckpt arguments` in this process, through the argument parser as `main` does,
    /// capturing what it prints: the status is the one the executable would exit with, and a
    /// failure's message is on `stderr` as the executable prints it.
    /// With `terminal`, standard error is taken for a terminal, so a progress bar is drawn into it.
    static func run(_ arguments: [String], terminal: Bool = false) -> CLIRun {
        let stdout = CapturedText(), stderr = CapturedText()
        let output = CommandOutput(
            standardOutput: stdout.append, standardError: stderr.append, standardErrorIsTerminal: { terminal })
        let status = CommandOutput.$current.withValue(output) { () -> Int32 in
            do {
                var command = try CheckpointCommand.parseAsRoot(arguments)
                try CheckpointCommand.run(&command)
                return 0
            } catch {
                let message = CheckpointCommand.fullMessage(for: error)
                if !message.isEmpty { output.standardError(message + "\n") }
                return CheckpointCommand.exitCode(for: error).rawValue
            }
        }
        return CLIRun(status: status, stdout: stdout.text, stderr: stderr.text)
    }

    /// Runs the built `ckpt` executable with `arguments` (and `environment` added to this
    /// process's) to completion: for what only a process shows (its exit status as the shell
    /// sees it, signals, the environment it starts with).
    static func runProcess(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIRun {
        let out = Pipe(), err = Pipe()
        let process = try start(arguments, environment: environment, stdout: out, stderr: err)
        // Read before waiting, so a full pipe cannot block the child.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CLIRun(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// A process handed to the launching thread, which is its only user until it returns.
private struct UncheckedProcess: @unchecked Sendable {
    let process: Process
}

/// Text a command prints in-process, from whichever thread prints it.
private final class CapturedText: Sendable {
    private let storage = Mutex("")

    var text: String { storage.withLock { $0 } }

    @Sendable func append(_ piece: String) { storage.withLock { $0 += piece } }
}
