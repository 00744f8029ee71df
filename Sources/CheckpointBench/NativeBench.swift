public import Checkpointing
import CheckpointToolSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The native format against the disk's own limit (`ckpt bench save`, the default).
///
/// Each save is set beside a raw write of the same tensor bytes from the same memory with
/// fsync, through the page cache and with direct I/O, and beside `dd ... conv=fsync` of as many bytes, in the same run, so the figures say
/// how close the save comes to the disk's limit; then a cold open (the header alone) and a
/// cold open with every checksum verified, and the XXH3-64 of every tensor in memory.
public struct NativeBench {
    let state: TrainingState
    let folder: String
    let repetitions: Int

    /// A benchmark of saving `state` in `folder`, each timing the median of `repetitions`.
    public init(state: TrainingState, folder: String, repetitions: Int) {
        self.state = state
        self.folder = folder
        self.repetitions = repetitions
    }

    /// Runs every measurement; the files are removed as it goes.
    public func run() throws -> some BenchReport {
        let tensors = state.tree.tensors.map(\.tensor)
        let tensorBytes = tensors.reduce(0) { $0 + $1.byteCount }
        let checkpointPath = folder + "/bench.safetensors"
        let rawPath = folder + "/raw.bin"

        var hash: [Double] = [], raw: [Double] = [], dd: [Double] = [], save: [Double] = [], open: [Double] = [], read: [Double] = []
        var direct: [Double] = [], rawCPU: [Double] = [], directCPU: [Double] = [], saveCPU: [Double] = []
        /// Runs `body`, appending its time and its CPU (user + system).
        func measure(_ times: inout [Double], _ cpus: inout [Double], _ body: () throws -> Void) rethrows {
            let cpu = CompressionBench.cpuSeconds()
            times.append(try time(body))
            cpus.append(CompressionBench.cpuSeconds() - cpu)
        }
        var fileBytes = 0
        for _ in 0..<repetitions {
            hash.append(time { for tensor in tensors { _ = tensor.checksum } })
            try measure(&raw, &rawCPU) { try rawWrite(tensors, to: rawPath) }
            try? FileManager.default.removeItem(atPath: rawPath)
            var wrote = false
            try measure(&direct, &directCPU) { wrote = try rawDirectWrite(tensors, to: rawPath) }
            // Where direct I/O is refused, no row.
            if !wrote { (direct, directCPU) = ([], []) }
            try? FileManager.default.removeItem(atPath: rawPath)
            if let seconds = try ddWrite(bytes: tensorBytes, to: rawPath) { dd.append(seconds) }
            try? FileManager.default.removeItem(atPath: rawPath)
            try measure(&save, &saveCPU) { try saveCheckpoint(state, filename: checkpointPath) }
            dropFromPageCache(checkpointPath)
            var file: CheckpointFile?
            open.append(try time { file = try CheckpointFile.open(checkpointPath) })
            fileBytes = file?.byteCount ?? 0
            file = nil
            dropFromPageCache(checkpointPath)
            read.append(try time {
                let opened = try CheckpointFile.open(checkpointPath)
                try opened.verify()
            })
            try FileManager.default.removeItem(atPath: checkpointPath)
        }

        return Result(
            tensorCount: tensors.count, tensorBytes: tensorBytes, fileBytes: fileBytes, repeats: repetitions,
            checksum: median(hash),
            rawWriteFsync: median(raw), rawWriteCPU: median(rawCPU),
            rawDirectWrite: direct.isEmpty ? nil : median(direct), rawDirectCPU: directCPU.isEmpty ? nil : median(directCPU),
            dd: dd.isEmpty ? nil : median(dd), save: median(save), saveCPU: median(saveCPU),
            open: median(open), readVerify: median(read))
    }

    /// `dd if=/dev/zero of=PATH bs=4M count=N conv=fsync`, timed; `nil` when dd is not installed.
    private func ddWrite(bytes: Int, to path: String) throws -> Double? {
        guard FileManager.default.isExecutableFile(atPath: "/bin/dd") else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/dd")
        let blocks = max(1, (bytes + (4 << 20) - 1) / (4 << 20))
        process.arguments = ["if=/dev/zero", "of=\(path)", "bs=4M", "count=\(blocks)", "conv=fsync"]
        process.standardError = FileHandle.nullDevice
        let start = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? (ContinuousClock.now - start).seconds : nil
    }
}

extension NativeBench {
    struct Result: BenchReport {
        var tensorCount: Int
        var tensorBytes: Int
        var fileBytes: Int
        var repeats: Int
        /// XXH3-64 over every tensor in memory: the checksum's share of a save.
        var checksum: Double
        var rawWriteFsync: Double
        var rawWriteCPU: Double
        /// The raw write with direct I/O; `nil` where the file system refuses it.
        var rawDirectWrite: Double?
        var rawDirectCPU: Double?
        var dd: Double?
        var save: Double
        var saveCPU: Double
        var open: Double
        var readVerify: Double

        func text() -> String {
            var rows = [["step", "time", "throughput", "vs raw write", "cpu"]]
            func row(_ name: String, _ seconds: Double, bytes: Int, compare: Bool, cpu: Double? = nil) {
                rows.append(timedRow(name, seconds, bytes: bytes, against: compare ? rawWriteFsync : nil) + [cpu.map { String(format: "%.3f s", $0) } ?? ""])
            }
            row("raw write + fsync", rawWriteFsync, bytes: tensorBytes, compare: true, cpu: rawWriteCPU)
            if let rawDirectWrite { row("raw O_DIRECT write + fsync", rawDirectWrite, bytes: tensorBytes, compare: true, cpu: rawDirectCPU) }
            if let dd { row("dd conv=fsync", dd, bytes: tensorBytes, compare: true) }
            row("durable save", save, bytes: fileBytes, compare: true, cpu: saveCPU)
            rows.append(["open (header only)", String(format: "%.2f ms", open * 1000), "", "", ""])
            row("open + verified read (cold)", readVerify, bytes: fileBytes, compare: false)
            row("xxh3-64 of all tensors (memory)", checksum, bytes: tensorBytes, compare: false)
            return """
                GPT-2-small-shaped state: \(tensorCount) tensors, \(Units.bytes(tensorBytes)) of tensor data, \
                \(Units.bytes(fileBytes)) file; median of \(repeats)
                \(Units.table(rows, rightAligned: [1, 2, 3, 4]))
                """
        }

        func json() -> [String: Any] {
            var object: [String: Any] = [
                "tensor_count": tensorCount, "tensor_bytes": tensorBytes, "file_bytes": fileBytes, "repeats": repeats,
                "raw_write_fsync_seconds": rawWriteFsync, "raw_write_cpu_seconds": rawWriteCPU, "checksum_seconds": checksum,
                "save_seconds": save, "save_cpu_seconds": saveCPU,
                "save_vs_raw": rawWriteFsync / save, "open_seconds": open, "read_verify_seconds": readVerify,
            ]
            if let dd { object["dd_fsync_seconds"] = dd }
            if let rawDirectWrite, let rawDirectCPU {
                object["raw_direct_write_fsync_seconds"] = rawDirectWrite
                object["raw_direct_write_cpu_seconds"] = rawDirectCPU
            }
            return object
        }
    }
}
