import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `ckpt`'s progress bar: drawn on standard error when it is a terminal (checked on a real
/// pseudo-terminal), cleared when each phase ends, and never drawn into a file or a pipe, nor
/// with `--quiet`.
@Suite struct ProgressBarTests {
    /// A compressed checkpoint of 8 MB of tensors: a load decompresses, then verifies.
    static func checkpoint(in folder: String) throws -> String {
        var random = SplitMix64(seed: 3)
        let floats = (0..<2_000_000).map { _ in Float(random.next() % 4096) / 64 }
        let state = TrainingState(model: ["w": .tensor(try Tensor(shape: [2_000_000], scalars: floats))])
        return try saveCheckpoint(state, filename: folder + "/a.safetensors.zst")[0]
    }

    /// Where the bar is redrawn: the line is cleared, then written again.
    static let redraw = "\r\u{1B}[2K"

    @Test func verifyDrawsEachPhaseOnATerminalAndClearsIt() throws {
        try withTemporaryFolder { folder in
            let path = try Self.checkpoint(in: folder)
            let run = CLI.run(["verify", path], terminal: true)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdout.hasPrefix("ok: "), "the report is on standard output, untouched")
            #expect(run.stderr.contains(Self.redraw + "decompressing"), "\(run.stderr.debugDescription)")
            #expect(run.stderr.contains(Self.redraw + "verifying"), "\(run.stderr.debugDescription)")
            #expect(run.stderr.contains("/ 8.00 MB"), "the total is the tensors' bytes: \(run.stderr.debugDescription)")
            #expect(run.stderr.hasSuffix(Self.redraw), "the last phase's line is cleared")
        }
    }

    @Test func convertDrawsItsSave() throws {
        try withTemporaryFolder { folder in
            let path = try Self.checkpoint(in: folder)
            let run = CLI.run(["convert", path, folder + "/b.pt"], terminal: true)
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stderr.contains(Self.redraw + "saving"), "\(run.stderr.debugDescription)")
        }
    }

    @Test func nothingIsDrawnWithQuietOrWithoutATerminal() throws {
        try withTemporaryFolder { folder in
            let path = try Self.checkpoint(in: folder)
            for (arguments, terminal) in [(["verify", path], false), (["verify", "--quiet", path], true), (["verify", "-q", path], true)] {
                let run = CLI.run(arguments, terminal: terminal)
                #expect(run.status == 0 && run.stdout.hasPrefix("ok: "), "\(arguments)")
                #expect(run.stderr.isEmpty, "\(arguments), terminal: \(terminal): \(run.stderr.debugDescription)")
            }
        }
    }

    /// The executable itself, its standard error a pseudo-terminal, then a file.
    @Test func theExecutableDrawsOnAPseudoTerminalOnly() throws {
        try withTemporaryFolder { folder in
            let path = try Self.checkpoint(in: folder)
            let onTerminal = try Self.runOnPseudoTerminal(["verify", path])
            #expect(onTerminal.status == 0)
            #expect(onTerminal.terminal.contains("verifying") && onTerminal.terminal.contains("%"), "\(onTerminal.terminal.debugDescription)")
            #expect(!onTerminal.terminal.contains("ok: "), "standard output is not the terminal")

            let quiet = try Self.runOnPseudoTerminal(["verify", "--quiet", path])
            #expect(quiet.status == 0 && quiet.terminal.isEmpty, "\(quiet.terminal.debugDescription)")

            let errors = folder + "/stderr.txt"
            #expect(FileManager.default.createFile(atPath: errors, contents: nil))
            let process = Process()
            process.executableURL = CLI.executable
            process.arguments = ["verify", path]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errors))
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: errors)).isEmpty, "nothing is drawn into a file")
        }
    }

    /// Runs `ckpt arguments` with standard error on a new pseudo-terminal (standard output on a
    /// pipe): its exit status and what it wrote to the terminal.
    static func runOnPseudoTerminal(_ arguments: [String]) throws -> (status: Int32, terminal: String) {
        var controller: Int32 = -1, device: Int32 = -1
        guard openpty(&controller, &device, nil, nil, nil) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(controller) }
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle(fileDescriptor: device, closeOnDealloc: false)
        do {
            try process.run()
        } catch {
            close(device)
            throw error
        }
        // Only the child holds the terminal now: reading ends (EIO) once it has exited.
        close(device)
        _ = output.fileHandleForReading.readDataToEndOfFile()
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(controller, &buffer, buffer.count)
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: bytes, as: UTF8.self))
    }
}
