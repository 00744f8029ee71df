public import Checkpointing
import CheckpointToolSupport
import Foundation

/// The float-split codec beside zstd (`ckpt bench fsz [--file MODEL]`).
///
/// On the same tree, in the same run, each method taking its turn: our durable save of
/// `.safetensors.fsz`, `.safetensors.zst` and `.pt.zst` at their default settings, each file's
/// open and full verified load (decoding every tensor and checking its checksum), and
/// `zstd -1 -T0` and `zstd -d` on the bytes of the plain native file; then the two codecs
/// alone, compressing those bytes in memory with nothing written, and decodes of the `.fsz`
/// file into fresh and into reused memory.
public struct FloatSplitBench {
    struct Row {
        var method: String
        var save: Double
        var cpu: Double
        var compressedBytes: Int
        var durable: Bool
        var open: Double?
        /// Open, decode or decompress everything, verify every checksum; for the tool, `zstd -d`.
        var load: Double?
    }

    struct Result {
        var source: String
        var uncompressedBytes: Int
        var threads: Int
        var rows: [Row]
        /// Per dtype, as `ckpt inspect` shows it.
        var shares: [CompressionShare]
        /// Opening the `.fsz` file and decoding every tensor, without verifying checksums, into
        /// fresh memory (none kept from an earlier decode).
        var decode: Double
        /// The CPU time (user + system, every thread of the process) of ``decode``: its rate
        /// per core does not depend on what else the machine runs.
        var decodeCPU: Double
        /// ``decode`` again at once, into the memory the first decode left (a process that
        /// loads checkpoints again and again).
        var repeatedDecode: Double
        var repeatedDecodeCPU: Double
        /// The codecs alone: the plain file's bytes compressed in memory, nothing written, with
        /// the same threads (float-split, and zstd unless `--fsz-only`).
        var codecs: [Codec]

        struct Codec {
            var codec: CompressionCodec
            var seconds: Double
            var cpu: Double
        }
    }

    let tree: StateValue
    /// What the tree is, for the report: the bench state or the file given.
    let source: String
    let folder: String
    let options: CompressionOptions
    let repetitions: Int
    /// Whether to measure the `.fsz` file alone (its save, open, decodes and verified load),
    /// for more repetitions of its decodes in the time.
    let fszOnly: Bool

    /// The benchmark, ready to ``run()``.
    public init(tree: StateValue, source: String, folder: String, options: CompressionOptions, repetitions: Int, fszOnly: Bool = false) {
        self.tree = tree
        self.source = source
        self.folder = folder
        self.options = options
        self.repetitions = repetitions
        self.fszOnly = fszOnly
    }

    /// Runs every measurement, removing its files as it goes.
    public func run() throws -> some BenchReport {
        let plain = folder + "/bench.safetensors"
        try saveCheckpoint(tree: tree, filename: plain)
        let uncompressed = try FileManager.default.attributesOfItem(atPath: plain)[.size] as? Int ?? 0
        struct Method {
            var row: Row
            var output: String
            var save: () throws -> Void
            var load: (() throws -> Void)?
        }
        var methods: [Method] = []
        for name in fszOnly ? ["bench.safetensors.fsz"] : ["bench.safetensors.fsz", "bench.safetensors.zst", "bench.pt.zst"] {
            let path = folder + "/" + name
            methods.append(Method(
                row: Row(method: "ours: save ." + name.split(separator: ".").dropFirst().joined(separator: "."), save: 0, cpu: 0, compressedBytes: 0, durable: true),
                output: path, save: { try saveCheckpoint(tree: tree, filename: path, compression: options) },
                load: { try CheckpointFile.open(path).verify() }))
        }
        let toolOutput = folder + "/tool.zst"
        let decoded = folder + "/tool.out"
        if !fszOnly { methods.append(Method(
            row: Row(method: "zstd -1 -T0 FILE", save: 0, cpu: 0, compressedBytes: 0, durable: false), output: toolOutput,
            save: { _ = try CompressionBench.runTool(["zstd", "-q", "-1", "-T0", "-c", plain], output: toolOutput) },
            load: {
                _ = try CompressionBench.runTool(["zstd", "-q", "-d", "-c", toolOutput], output: decoded)
                try FileManager.default.removeItem(atPath: decoded)
            })) }

        var saves = Array(repeating: [Double](), count: methods.count)
        var cpus = saves, opens = saves, loads = saves
        var shares: [CompressionShare] = []
        var decodes: [Double] = [], decodeCPUs: [Double] = []
        var repeatedDecodes: [Double] = [], repeatedDecodeCPUs: [Double] = []
        let codecs: [CompressionCodec] = fszOnly ? [.floatSplit] : [.floatSplit, .zstd]
        var codecSeconds = [[Double]](repeating: [], count: codecs.count), codecCPUs = codecSeconds
        let plainFile = try MappedFile(path: plain)
        for _ in 0..<repetitions {
            for (number, codec) in codecs.enumerated() {
                let cpu = CompressionBench.cpuSeconds()
                codecSeconds[number].append(try time { _ = try codec.compressedSize(of: plainFile.bytes, options: options) })
                codecCPUs[number].append(CompressionBench.cpuSeconds() - cpu)
            }
            for (number, method) in methods.enumerated() {
                let cpu = CompressionBench.cpuSeconds()
                saves[number].append(try time(method.save))
                cpus[number].append(CompressionBench.cpuSeconds() - cpu)
                methods[number].row.compressedBytes = try FileManager.default.attributesOfItem(atPath: method.output)[.size] as? Int ?? 0
                if method.row.durable {
                    opens[number].append(try time { _ = try CheckpointFile.open(method.output) })
                    if method.output.hasSuffix(".fsz") {
                        shares = try CheckpointFile.open(method.output).compressionShares
                        func decode() throws -> (seconds: Double, cpu: Double) {
                            let before = CompressionBench.cpuSeconds()
                            let seconds = try time { try CheckpointFile.open(method.output).decode { _ in true } }
                            return (seconds, CompressionBench.cpuSeconds() - before)
                        }
                        // The first into fresh memory, the second into what the first left.
                        CheckpointFile.releaseKeptDecodeMemory()
                        let first = try decode()
                        let repeated = try decode()
                        CheckpointFile.releaseKeptDecodeMemory()
                        decodes.append(first.seconds)
                        decodeCPUs.append(first.cpu)
                        repeatedDecodes.append(repeated.seconds)
                        repeatedDecodeCPUs.append(repeated.cpu)
                    }
                }
                if let load = method.load { loads[number].append(try time(load)) }
                try FileManager.default.removeItem(atPath: method.output)
            }
        }
        try FileManager.default.removeItem(atPath: plain)
        let rows = methods.enumerated().map { number, method in
            var row = method.row
            row.save = median(saves[number])
            row.cpu = median(cpus[number])
            row.open = opens[number].isEmpty ? nil : median(opens[number])
            row.load = loads[number].isEmpty ? nil : median(loads[number])
            return row
        }
        return Result(
            source: source, uncompressedBytes: uncompressed, threads: options.threads ?? ProcessInfo.processInfo.activeProcessorCount,
            rows: rows, shares: shares, decode: median(decodes), decodeCPU: median(decodeCPUs),
            repeatedDecode: median(repeatedDecodes), repeatedDecodeCPU: median(repeatedDecodeCPUs),
            codecs: codecs.enumerated().map { number, codec in
                Result.Codec(codec: codec, seconds: median(codecSeconds[number]), cpu: median(codecCPUs[number]))
            })
    }
}

extension FloatSplitBench.Result: BenchReport {
    func text() -> String {
        var table = [["method", "save", "cpu", "save rate", "ratio", "size", "open", "verified load", "load rate"]]
        for row in rows {
            table.append([
                row.method + (row.durable ? " (fsync)" : ""), String(format: "%.3f s", row.save), String(format: "%.3f s", row.cpu),
                Units.rate(bytes: uncompressedBytes, seconds: row.save),
                String(format: "%.3f", Double(uncompressedBytes) / Double(max(row.compressedBytes, 1))),
                Units.bytes(row.compressedBytes),
                row.open.map { String(format: "%.1f ms", $0 * 1000) } ?? "-",
                row.load.map { String(format: "%.3f s", $0) } ?? "-",
                row.load.map { Units.rate(bytes: uncompressedBytes, seconds: $0) } ?? "-",
            ])
        }
        var shareTable = [["dtype", "bytes", "compressed", "ratio"]]
        for share in shares {
            shareTable.append([share.dtype?.rawValue ?? "(header)", Units.bytes(share.bytes), Units.bytes(share.compressedBytes), String(format: "%.3f", share.ratio)])
        }
        return """
            \(source): \(Units.bytes(uncompressedBytes)) as a native .safetensors file; \(threads) threads; \
            rates count uncompressed bytes; the tool's load is `zstd -d` into a file
            \(Units.table(table, rightAligned: [1, 2, 3, 4, 5, 6, 7, 8]))
            the codecs alone, compressing the file's bytes in memory (nothing written; CPU: user + system):
            \(codecs.map { "  \($0.codec.rawValue): ".padding(toLength: 32, withPad: " ", startingAt: 0) + rateLine($0.seconds, $0.cpu) }.joined(separator: "\n"))
            .fsz open + decode of every tensor (no checksums; CPU: user + system of the whole process):
              into fresh memory:           \(rateLine(decode, decodeCPU))
              again, into reused memory:   \(rateLine(repeatedDecode, repeatedDecodeCPU))

            .fsz by dtype:
            \(Units.table(shareTable, rightAligned: [1, 2, 3]))
            """
    }

    private func rateLine(_ seconds: Double, _ cpu: Double) -> String {
        String(format: "%.3f s, ", seconds) + Units.rate(bytes: uncompressedBytes, seconds: seconds)
            + String(format: "; CPU %.3f s, ", cpu) + Units.rate(bytes: uncompressedBytes, seconds: cpu) + " per core"
    }

    func json() -> [String: Any] {
        [
            "source": source, "uncompressed_bytes": uncompressedBytes, "threads": threads, "fsz_decode_seconds": decode, "fsz_decode_cpu_seconds": decodeCPU,
            "fsz_repeated_decode_seconds": repeatedDecode, "fsz_repeated_decode_cpu_seconds": repeatedDecodeCPU,
            "codecs_in_memory": codecs.map { ["codec": $0.codec.rawValue, "seconds": $0.seconds, "cpu_seconds": $0.cpu] as [String: Any] },
            "rows": rows.map { row -> [String: Any] in
                var object: [String: Any] = [
                    "method": row.method, "save_seconds": row.save, "cpu_seconds": row.cpu, "compressed_bytes": row.compressedBytes,
                    "durable": row.durable,
                ]
                if let open = row.open { object["open_seconds"] = open }
                if let load = row.load { object["verified_load_seconds"] = load }
                return object
            },
            "fsz_by_dtype": shares.map { ["dtype": $0.dtype?.rawValue ?? "header", "bytes": $0.bytes, "compressed_bytes": $0.compressedBytes] as [String: Any] },
        ]
    }
}
