import ArgumentParser
import Checkpointing
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `ckpt bench [--scale X] [--json]`: the native format against the disk's own limit.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time a durable save, an open and a verified read of a GPT-2-small-shaped state.",
        discussion: """
            Each save is set beside a raw write of the same tensor bytes from the same memory with \
            fsync, and beside `dd ... conv=fsync` of as many bytes, in the same run, so the figures \
            say how close the save comes to the disk's limit. Build with -c release to measure.
            """)

    @Option(help: "Multiply every tensor's first dimension (1 = 584 tensors, 1.49 GB).")
    var scale: Double = 1

    @Option(name: .customLong("repeat"), help: "Repetitions; the median of each timing is reported.")
    var repetitions: Int = 3

    @Option(help: "Folder for the files (removed afterwards). Defaults to a temporary folder.")
    var folder: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Measure the training-loop stall of CheckpointSaver's synchronous and asynchronous saves instead.")
    var saver = false

    @Option(help: """
        Measure compressed saves instead: our save with this codec (gz, bz2, xz, lzma, zst, lz4, lzo, \
        or its name) beside Composer's pipe into the codec's tool and the tool on all cores; \
        `all`: our save and open with every codec; fsz: the float-split codec's save, open and \
        verified load beside .safetensors.zst, .pt.zst and zstd -1 -T0.
        """)
    var compression: String?

    @Option(help: "With --compression fsz: measure on this checkpoint (a trained model's safetensors file) instead of the bench state.")
    var file: String?

    @Option(help: """
        pt: also save the same state as a PyTorch .pt file, and set its save, open and verified read beside the native ones; \
        hf: also save every tensor as a Hugging Face sharded folder, and set its save, open and verified read beside them; \
        dcp: the same with a PyTorch Distributed Checkpoint folder.
        """)
    var format: String = "native"

    @Option(help: "With --format hf: the largest shard (default 500MB, so the state makes several shards).")
    var maxShardSize: String = "500MB"

    @Option(help: "The compression level for --compression (default: the codec's fast default).")
    var level: Int?

    @Option(help: "Compression threads for zstd, xz and fsz with --compression (default: every core).")
    var threads: Int?

    @Flag(help: "Measure sharded saves and loads instead: run under mpirun -np N; each rank saves its rows of every tensor (with --s3: to and from the store, beside raw PUTs and GETs, and a reshard onto half the ranks).")
    var sharded = false

    @Option(help: "Measure upload and download to this s3:// prefix instead (endpoint and credentials from the environment).")
    var s3: String?

    @Option(help: "With --s3: the part size in MiB (default 16).")
    var partSize: Int?

    @Option(help: "With --s3: the most parts in flight (default 8).")
    var concurrency: Int?

    func validate() throws {
        guard scale > 0 else { throw ValidationError("--scale must be positive") }
        guard repetitions >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard ["native", "pt", "hf", "dcp"].contains(format) else { throw ValidationError("--format takes native, pt, hf or dcp") }
        do {
            _ = try HuggingFaceSharded.parseSize(maxShardSize)
        } catch {
            throw ValidationError(error.message)
        }
        if let compression, compression != "all", Self.codec(compression) == nil {
            throw ValidationError("--compression takes gz, bz2, xz, lzma, zst, lz4, lzo, fsz (or gzip, bzip2, zstd, lzop, float-split) or all")
        }
        if file != nil, compression.flatMap(Self.codec) != .floatSplit {
            throw ValidationError("--file goes with --compression fsz")
        }
        if let s3, ObjectLocation(s3) == nil { throw ValidationError("--s3 takes an s3://bucket/prefix URL") }
        if let partSize, partSize < 1 { throw ValidationError("--part-size must be at least 1 (MiB)") }
        if let concurrency, concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
    }

    /// Prints a benchmark's result as a table, or as one JSON object with `--json`.
    private func report(_ result: some BenchReport) throws {
        if json {
            let data = try JSONSerialization.data(withJSONObject: result.json(), options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(result.text())
        }
    }

    static func codec(_ name: String) -> CompressionCodec? {
        CompressionCodec(fileExtension: name) ?? CompressionCodec(rawValue: name)
    }

    func run() throws {
        let directory = folder ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("ckpt-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        if sharded, let s3, let prefix = ObjectLocation(s3) {
            let group = try commandProcessGroup(timeout: 1800)
            let result = try ShardedS3Bench(
                state: try SyntheticState.gpt2Small(scale: scale), prefix: prefix, folder: directory, repetitions: repetitions,
                processGroup: group
            ).run()
            if group.rank == 0 { try report(result) }
            return
        }
        if let s3, let prefix = ObjectLocation(s3) {
            let result = try S3Bench(
                makeState: { try SyntheticState.gpt2Small(scale: scale) }, prefix: prefix, repetitions: repetitions, partSize: partSize.map { $0 << 20 },
                concurrency: concurrency, folder: directory
            ).run()
            try report(result)
            return
        }
        if let compression, Self.codec(compression) == .floatSplit {
            let tree = try file.map { try CheckpointFile.open($0).tree } ?? SyntheticState.gpt2Small(scale: scale).tree
            let result = try FloatSplitBench(
                tree: tree, source: file ?? "bench state (scale \(scale))", folder: directory,
                options: CompressionOptions(level: level, threads: threads), repetitions: repetitions
            ).run()
            try report(result)
            return
        }
        let state = try SyntheticState.gpt2Small(scale: scale)
        if sharded {
            let group = try commandProcessGroup(timeout: 1800)
            let result = try ShardedBench(state: state, folder: directory, repetitions: repetitions, processGroup: group).run()
            if group.rank == 0 { try report(result) }
            return
        }
        if saver {
            let result = try SaverBench(state: state, folder: directory).run()
            try report(result)
            return
        }
        if format == "pt" {
            let result = try TorchBench(state: state, folder: directory, repetitions: repetitions).run()
            try report(result)
            return
        }
        if format == "dcp" {
            let result = try DCPBench(state: state, folder: directory, repetitions: repetitions).run()
            try report(result)
            return
        }
        if format == "hf" {
            let result = try HuggingFaceBench(
                state: state, folder: directory, repetitions: repetitions, maxShardSize: try HuggingFaceSharded.parseSize(maxShardSize)
            ).run()
            try report(result)
            return
        }
        if let compression {
            let codecs = compression == "all" ? CompressionCodec.allCases : [Self.codec(compression)!]
            let result = try CompressionBench(
                state: state, folder: directory, codecs: codecs, options: CompressionOptions(level: level, threads: threads),
                compareWithTools: compression != "all", repetitions: repetitions
            ).run()
            try report(result)
            return
        }
        let tensors = state.tree.tensors.map(\.tensor)
        let tensorBytes = tensors.reduce(0) { $0 + $1.byteCount }
        let checkpointPath = directory + "/bench.safetensors"
        let rawPath = directory + "/raw.bin"

        var hash: [Double] = [], raw: [Double] = [], dd: [Double] = [], save: [Double] = [], open: [Double] = [], read: [Double] = []
        var fileBytes = 0
        for _ in 0..<repetitions {
            hash.append(try time { for tensor in tensors { _ = tensor.checksum } })
            raw.append(try time { try rawWrite(tensors, to: rawPath) })
            try? FileManager.default.removeItem(atPath: rawPath)
            if let seconds = try ddWrite(bytes: tensorBytes, to: rawPath) { dd.append(seconds) }
            try? FileManager.default.removeItem(atPath: rawPath)
            save.append(try time { try saveCheckpoint(state, filename: checkpointPath) })
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

        let result = BenchResult(
            tensorCount: tensors.count, tensorBytes: tensorBytes, fileBytes: fileBytes, repeats: repetitions,
            checksum: median(hash),
            rawWriteFsync: median(raw), dd: dd.isEmpty ? nil : median(dd), save: median(save),
            open: median(open), readVerify: median(read))
        try report(result)
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

/// A benchmark's figures, printable as a table or as JSON.
protocol BenchReport {
    func text() -> String
    func json() -> [String: Any]
}

struct BenchResult: BenchReport {
    var tensorCount: Int
    var tensorBytes: Int
    var fileBytes: Int
    var repeats: Int
    /// XXH3-64 over every tensor in memory: the checksum's share of a save.
    var checksum: Double
    var rawWriteFsync: Double
    var dd: Double?
    var save: Double
    var open: Double
    var readVerify: Double

    func text() -> String {
        var rows = [["step", "time", "throughput", "vs raw write"]]
        func row(_ name: String, _ seconds: Double, bytes: Int, compare: Bool) {
            rows.append(timedRow(name, seconds, bytes: bytes, against: compare ? rawWriteFsync : nil))
        }
        row("raw write + fsync", rawWriteFsync, bytes: tensorBytes, compare: true)
        if let dd { row("dd conv=fsync", dd, bytes: tensorBytes, compare: true) }
        row("durable save", save, bytes: fileBytes, compare: true)
        rows.append(["open (header only)", String(format: "%.2f ms", open * 1000), "", ""])
        row("open + verified read (cold)", readVerify, bytes: fileBytes, compare: false)
        row("xxh3-64 of all tensors (memory)", checksum, bytes: tensorBytes, compare: false)
        return """
            GPT-2-small-shaped state: \(tensorCount) tensors, \(Units.bytes(tensorBytes)) of tensor data, \
            \(Units.bytes(fileBytes)) file; median of \(repeats)
            \(Units.table(rows, rightAligned: [1, 2, 3]))
            """
    }

    func json() -> [String: Any] {
        var object: [String: Any] = [
            "tensor_count": tensorCount, "tensor_bytes": tensorBytes, "file_bytes": fileBytes, "repeats": repeats,
            "raw_write_fsync_seconds": rawWriteFsync, "checksum_seconds": checksum, "save_seconds": save,
            "save_vs_raw": rawWriteFsync / save, "open_seconds": open, "read_verify_seconds": readVerify,
        ]
        if let dd { object["dd_fsync_seconds"] = dd }
        return object
    }
}
