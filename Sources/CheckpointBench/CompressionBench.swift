public import Checkpointing
import CheckpointToolSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Compressed saves on the bench state (`ckpt bench compression CODEC`).
///
/// For one codec, in the same run on the same state: our durable save of `.pt.CODEC` (in-process,
/// streaming, the codec's threads) beside Composer's method (the uncompressed `torch.save`
/// bytes piped into the codec's command-line tool at its defaults), beside the tool on all
/// cores where it has threads (`zstd -T0`, `xz -T0`) and the tool at its default level from
/// the same file. `all` measures our save and open for every codec.
public struct CompressionBench {
    struct Row {
        var method: String
        var seconds: Double
        /// CPU time of every thread and child process: what the method costs whatever else
        /// the machine is doing.
        var cpuSeconds: Double = 0
        var compressedBytes: Int
        var durable: Bool
    }

    struct Result {
        var format: String
        var uncompressedBytes: Int
        var rows: [Row]
        /// Opening each of our files: decompression into a temporary file, then parsing.
        var opens: [(codec: CompressionCodec, seconds: Double)]
    }

    let state: TrainingState
    let folder: String
    let codecs: [CompressionCodec]
    let options: CompressionOptions
    let compareWithTools: Bool
    /// Each measurement is repeated, the methods taking turns, and the median kept: the
    /// machine's load then weighs on every method alike.
    let repetitions: Int

    /// The benchmark, ready to ``run()``.
    public init(state: TrainingState, folder: String, codecs: [CompressionCodec], options: CompressionOptions, compareWithTools: Bool, repetitions: Int) {
        self.state = state
        self.folder = folder
        self.codecs = codecs
        self.options = options
        self.compareWithTools = compareWithTools
        self.repetitions = repetitions
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        // The uncompressed file: the bytes Composer would pipe into the tool.
        var format = "pt"
        var plain = folder + "/bench.pt"
        do {
            try saveCheckpoint(state, filename: plain)
        } catch {
            // Not `catch ... where`: Swift 6.3.1 crashes compiling one over typed throws here
            // (swiftlang/swift#88220).
            guard error.code == .unsupportedFormat else { throw error }
            format = "safetensors"
            plain = folder + "/bench.safetensors"
            try saveCheckpoint(state, filename: plain)
        }
        let uncompressed = try MappedFile(path: plain)
        var rows: [Row] = []
        var opens: [(CompressionCodec, Double)] = []
        for codec in codecs {
            var methods: [(row: Row, measure: () throws -> Double, output: String)] = []
            let ours = folder + "/bench.\(format).\(codec.fileExtension)"
            methods.append((
                Row(method: "ours: save .\(format).\(codec.fileExtension)", seconds: 0, compressedBytes: 0, durable: true),
                { try time { try saveCheckpoint(state, filename: ours, compression: options) } }, ours
            ))
            if compareWithTools {
                let piped = folder + "/piped.\(codec.fileExtension)"
                methods.append((
                    Row(method: "Composer: bytes | \(codec.toolName)", seconds: 0, compressedBytes: 0, durable: false),
                    { try pipe(uncompressed.bytes, into: [codec.toolName, "-c"], output: piped) }, piped
                ))
                if codec.isMultithreaded {
                    let output = folder + "/tool.\(codec.fileExtension)"
                    methods.append((
                        Row(method: "\(codec.toolName) -T0 FILE", seconds: 0, compressedBytes: 0, durable: false),
                        { try Self.runTool([codec.toolName, "-q", "-T0", "-c", plain], output: output) }, output
                    ))
                }
            }
            var times = Array(repeating: [Double](), count: methods.count)
            var cpuTimes = Array(repeating: [Double](), count: methods.count)
            var openTimes: [Double] = []
            for _ in 0..<repetitions {
                for (index, method) in methods.enumerated() {
                    let cpu = Self.cpuSeconds()
                    times[index].append(try method.measure())
                    cpuTimes[index].append(Self.cpuSeconds() - cpu)
                    methods[index].row.compressedBytes = size(method.output)
                    if index == 0 { openTimes.append(try time { _ = try CheckpointFile.open(ours) }) }
                    try FileManager.default.removeItem(atPath: method.output)
                }
            }
            for (index, method) in methods.enumerated() {
                var row = method.row
                row.seconds = median(times[index])
                row.cpuSeconds = median(cpuTimes[index])
                rows.append(row)
            }
            opens.append((codec, median(openTimes)))
        }
        try FileManager.default.removeItem(atPath: plain)
        return Result(format: format, uncompressedBytes: uncompressed.bytes.count, rows: rows, opens: opens)
    }


    /// User and system time of this process's threads and its finished children.
    static func cpuSeconds() -> Double {
        var total = 0.0
        for who in [RUSAGE_SELF, RUSAGE_CHILDREN] {
            var usage = rusage()
            getrusage(__rusage_who_t(who.rawValue), &usage)
            for time in [usage.ru_utime, usage.ru_stime] { total += Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        }
        return total
    }

    private func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }


    /// Writes `bytes` into a tool's standard input through a pipe, its output to `output`;
    /// the time until the tool exits.
    private func pipe(_ bytes: UnsafeRawBufferPointer, into command: [String], output: String) throws -> Double {
        let process = try Self.makeProcess(command, output: output)
        let pipe = Pipe()
        process.standardInput = pipe
        let start = ContinuousClock.now
        try process.run()
        let fd = pipe.fileHandleForWriting.fileDescriptor
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(fd, bytes.baseAddress! + offset, min(bytes.count - offset, 1 << 20))
            guard written > 0 else { throw CommandFailure("writing into \(command[0]) failed: errno \(errno)") }
            offset += written
        }
        try pipe.fileHandleForWriting.close()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CommandFailure("\(command.joined(separator: " ")) failed") }
        return (ContinuousClock.now - start).seconds
    }

    /// Runs a tool with its standard output to `output`; the time until it exits.
    static func runTool(_ command: [String], output: String) throws -> Double {
        let process = try makeProcess(command, output: output)
        let start = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CommandFailure("\(command.joined(separator: " ")) failed") }
        return (ContinuousClock.now - start).seconds
    }

    private static func makeProcess(_ command: [String], output: String) throws -> Process {
        guard FileManager.default.createFile(atPath: output, contents: nil) else {
            throw CommandFailure("cannot create \(output)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardError = FileHandle.nullDevice
        return process
    }
}

extension CompressionBench.Result: BenchReport {
    /// MB/s: the slow codecs (xz, bzip2) run at a few MB/s.
    static func rate(_ bytes: Int, _ seconds: Double) -> String {
        seconds > 0 ? String(format: "%.1f MB/s", Double(bytes) / seconds / 1e6) : "-"
    }

    func text() -> String {
        let fastest = rows.filter { !$0.method.hasPrefix("ours") }.map(\.seconds).min()
        var table = [["method", "time", "cpu", "throughput", "ratio", "size", "ours vs it"]]
        let ours = rows.first { $0.method.hasPrefix("ours") }
        for row in rows {
            table.append([
                row.method + (row.durable ? " (fsync)" : ""), String(format: "%.3f s", row.seconds),
                String(format: "%.2f s", row.cpuSeconds),
                Self.rate(uncompressedBytes, row.seconds),
                String(format: "%.3f", Double(uncompressedBytes) / Double(max(row.compressedBytes, 1))),
                Units.bytes(row.compressedBytes),
                row.method.hasPrefix("ours") || ours == nil ? "" : String(format: "%.2fx", row.seconds / ours!.seconds),
            ])
        }
        var lines = [
            "bench state as .\(format): \(Units.bytes(uncompressedBytes)) uncompressed; throughput counts uncompressed bytes",
            Units.table(table, rightAligned: [1, 2, 3, 4, 5, 6]),
        ]
        if !opens.isEmpty {
            lines.append("")
            lines.append(Units.table(
                [["open (decompress + parse)", "time", "throughput"]]
                    + opens.map { [$0.codec.rawValue, String(format: "%.3f s", $0.seconds), Self.rate(uncompressedBytes, $0.seconds)] },
                rightAligned: [1, 2]))
        }
        if fastest == nil { lines.append("(tools not compared: pass one codec to set our save beside them)") }
        return lines.joined(separator: "\n")
    }

    func json() -> [String: Any] {
        [
            "format": format, "uncompressed_bytes": uncompressedBytes,
            "rows": rows.map {
                ["method": $0.method, "seconds": $0.seconds, "cpu_seconds": $0.cpuSeconds, "compressed_bytes": $0.compressedBytes, "durable": $0.durable]
            },
            "opens": opens.map { ["codec": $0.codec.rawValue, "seconds": $0.seconds] },
        ]
    }
}
