import CheckpointingTestSupport
import Foundation
import Testing

/// Runs the built `ckpt` executable and collects what it printed.
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
        try process.run()
        return process
    }

    /// Runs `ckpt` with `arguments` (and `environment` added to this process's) to completion.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> CLIRun {
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
