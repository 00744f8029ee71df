import ArgumentParser
import Checkpointing
import Crypto
import Foundation

/// `ckpt inspect PATH [--json] [--hashes]`.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's format, run name, timestamp and tensors.",
        discussion: """
            For a sharded checkpoint (its manifest, or the folder that holds it), shows its shards \
            and every tensor's global shape and number of pieces. For a PyTorch Distributed \
            Checkpoint (DCP) folder, shows its data files and every tensor's chunks.
            """)

    @Argument(help: "The checkpoint file, a sharded checkpoint's manifest or folder, or a DCP folder.")
    var path: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Add the SHA-256 of each tensor's raw little-endian row-major bytes.")
    var hashes = false

    @OptionGroup var decompression: DecompressionFlags

    func run() throws {
        let report = try InspectReport(path: path, hashes: hashes, limits: decompression.limits)
        print(json ? report.json() : report.text())
    }
}

/// What `ckpt inspect` shows, built once and printed as text or JSON.
struct InspectReport {
    struct TensorRow {
        var path: String
        var dtype: String
        var shape: [Int]
        var bytes: Int
        var sha256: String?
        /// For a sharded checkpoint, how many shards hold a piece of the tensor.
        var pieces: Int?
        /// For a DCP checkpoint, the boxes of the tensor's chunks and the data file of each.
        var chunks: [(box: TensorSlice, file: String)]?
    }

    /// The shards of a sharded checkpoint.
    struct ShardRow {
        var rank: Int
        var path: String
        var bytes: Int
        var digest: String
    }

    var path: String
    var format: String
    /// The codec of a compressed file (SPEC §8).
    var compression: String?
    /// The member of a tar archive that holds the checkpoint.
    var tarMember: String?
    var fileBytes: Int
    var runName: String?
    var timestamp: Timestamp?
    var tensors: [TensorRow]
    var shards: [ShardRow]? = nil

    init(path: String, hashes: Bool, limits: DecompressionLimits = DecompressionLimits()) throws {
        if try DistributedCheckpoint.locate(path) == nil, let manifestPath = try ShardManifest.locate(path) {
            try self.init(manifestPath: manifestPath, hashes: hashes, limits: limits)
        } else {
            try self.init(file: path, hashes: hashes, limits: limits)
        }
    }

    /// One checkpoint file.
    private init(file path: String, hashes: Bool, limits: DecompressionLimits) throws {
        let file = try CheckpointFile.open(path, decompressionLimits: limits)
        let dcp = file.distributedCheckpoint
        let chunks = Dictionary(dcp?.tensors.map { ($0.path, $0.chunks.map { (box: $0.box, file: $0.file) }) } ?? [], uniquingKeysWith: { a, _ in a })
        let tensors = file.tree.tensors.map { entry in
            TensorRow(
                path: entry.path, dtype: entry.tensor.dtype.rawValue, shape: entry.tensor.shape,
                bytes: entry.tensor.byteCount,
                sha256: hashes ? entry.tensor.withUnsafeBytes { SHA256.hash(data: $0).hexString } : nil,
                chunks: dcp == nil ? nil : chunks[entry.path] ?? [])
        }
        var format = file.formatName
        if let dcp {
            format += ", \(dcp.files.count) data file\(dcp.files.count == 1 ? "" : "s")"
        }
        self.init(path: file.path, describing: file, format: format, fileBytes: file.byteCount, tensors: tensors)
        if let dcp {
            // DCP names each data file after the rank that wrote it; it records no digest.
            shards = dcp.files.enumerated().map { index, data in
                ShardRow(rank: Self.writerRank(data.name) ?? index, path: data.name, bytes: data.size, digest: "-")
            }
        }
    }

    /// The rank in a DCP data file's name, `__<rank>_<n>.distcp`.
    private static func writerRank(_ name: String) -> Int? {
        guard name.hasPrefix("__") else { return nil }
        return name.dropFirst(2).split(separator: "_").first.flatMap { Int($0) }
    }

    /// A sharded checkpoint: the manifest, and rank 0's shard for the run name and timestamp.
    private init(manifestPath: String, hashes: Bool, limits: DecompressionLimits) throws {
        guard !hashes else {
            throw CheckpointError(
                .invalidArgument, "--hashes needs whole tensors; convert the sharded checkpoint to one file first")
        }
        let manifest = try ShardManifest.read(manifestPath)
        let first = try CheckpointFile.open(manifest.shardPath(rank: 0, manifestPath: manifestPath), decompressionLimits: limits)
        let tensors = manifest.tensors.map { entry in
            TensorRow(
                path: entry.path, dtype: entry.dtype.rawValue, shape: entry.shape,
                bytes: entry.shape.reduce(entry.dtype.byteSize, *), pieces: Set(entry.pieces.map(\.rank)).count)
        }
        self.init(
            path: manifestPath, describing: first,
            format: "sharded \(first.formatName), \(manifest.worldSize) rank\(manifest.worldSize == 1 ? "" : "s")",
            fileBytes: manifest.shards.reduce(0) { $0 + $1.size }, tensors: tensors)
        shards = manifest.shards.map { ShardRow(rank: $0.rank, path: $0.path, bytes: $0.size, digest: $0.digest) }
    }

    /// The report's fields, with the compression, tar member, run name and timestamp read from `file`.
    private init(path: String, describing file: CheckpointFile, format: String, fileBytes: Int, tensors: [TensorRow]) {
        self.path = path
        self.format = format
        self.fileBytes = fileBytes
        self.tensors = tensors
        compression = file.compression?.rawValue
        tarMember = file.layers.lazy.compactMap { if case .tar(let member) = $0 { member } else { nil } }.first
        let state = try? TrainingState(tree: file.tree)
        let stateDict = file.tree.dictValue?["state"]?.dictValue
        runName = stateDict?["run_name"] != nil ? state?.runName : nil
        timestamp = stateDict?["timestamp"] != nil ? state?.timestamp : nil
    }

    var totalTensorBytes: Int { tensors.reduce(0) { $0 + $1.bytes } }

    /// A tensor's chunks in a cell: their count, and each box's rows when they split the rows.
    private static func describe(_ chunks: [(box: TensorSlice, file: String)]) -> String {
        guard chunks.count > 1 else { return String(chunks.count) }
        let ranges = chunks.map { chunk in
            chunk.box.offset.indices.map { "\(chunk.box.offset[$0])..<\(chunk.box.offset[$0] + chunk.box.shape[$0])" }.joined(separator: ",")
        }
        return "\(chunks.count): " + ranges.joined(separator: " ")
    }

    func text() -> String {
        var lines = [
            "path:      \(path)",
            "format:    \(format)",
            "compress:  \(compression ?? "none")",
        ]
        if let tarMember { lines.append("container: tar, member \(tarMember)") }
        lines += [
            "size:      \(Units.bytes(fileBytes))",
            "run name:  \(runName ?? "-")",
        ]
        if let timestamp {
            lines.append(
                "timestamp: epoch \(timestamp.epoch), batch \(timestamp.batch), sample \(timestamp.sample), token \(timestamp.token), total_wct \(timestamp.totalWct.seconds)s"
            )
        } else {
            lines.append("timestamp: -")
        }
        lines.append("")
        if let shards {
            var table = [["rank", tensors.contains { $0.chunks != nil } ? "data file" : "shard", "bytes", "digest"]]
            for shard in shards { table.append([String(shard.rank), shard.path, String(shard.bytes), shard.digest]) }
            lines.append(Units.table(table, rightAligned: [0, 2]))
            lines.append("")
        }
        let sharded = shards != nil
        let chunked = tensors.contains { $0.chunks != nil }
        var header = ["tensor", "dtype", sharded ? "global shape" : "shape", "bytes"]
        if chunked {
            header.append("chunks")
        } else if sharded {
            header.append("shards")
        }
        if tensors.first?.sha256 != nil { header.append("sha256") }
        var table = [header]
        for row in tensors {
            let shape = "[" + row.shape.map(String.init).joined(separator: ", ") + "]"
            var cells = [row.path, row.dtype, shape, String(row.bytes)]
            if let pieces = row.pieces { cells.append(String(pieces)) }
            if let chunks = row.chunks { cells.append(Self.describe(chunks)) }
            if let sha256 = row.sha256 { cells.append(sha256) }
            table.append(cells)
        }
        lines.append(Units.table(table, rightAligned: sharded && !chunked ? [3, 4] : [3]))
        lines.append("")
        lines.append("total: \(tensors.count) tensors, \(Units.bytes(totalTensorBytes)) of tensor data")
        return lines.joined(separator: "\n")
    }

    func json() -> String {
        var object: [String: Any] = [
            "path": path,
            "format": format,
            "compression": compression.map { $0 as Any } ?? NSNull(),
            "tar_member": tarMember.map { $0 as Any } ?? NSNull(),
            "file_bytes": fileBytes,
            "tensor_count": tensors.count,
            "tensor_bytes": totalTensorBytes,
            "run_name": runName.map { $0 as Any } ?? NSNull(),
            "tensors": tensors.map { row -> [String: Any] in
                var entry: [String: Any] = ["path": row.path, "dtype": row.dtype, "shape": row.shape, "bytes": row.bytes]
                if let sha = row.sha256 { entry["sha256"] = sha }
                if let pieces = row.pieces { entry["shards"] = pieces }
                if let chunks = row.chunks {
                    entry["chunks"] = chunks.map { ["offset": $0.box.offset, "shape": $0.box.shape, "file": $0.file] as [String: Any] }
                }
                return entry
            },
        ]
        if let shards {
            object["shards"] = shards.map { ["rank": $0.rank, "path": $0.path, "bytes": $0.bytes, "digest": $0.digest] as [String: Any] }
        }
        if let timestamp {
            object["timestamp"] = [
                "iteration": timestamp.iteration, "epoch": timestamp.epoch, "batch": timestamp.batch,
                "sample": timestamp.sample, "token": timestamp.token,
                "epoch_in_iteration": timestamp.epochInIteration, "token_in_iteration": timestamp.tokenInIteration,
                "batch_in_epoch": timestamp.batchInEpoch, "sample_in_epoch": timestamp.sampleInEpoch,
                "token_in_epoch": timestamp.tokenInEpoch, "total_wct": timestamp.totalWct.seconds,
                "iteration_wct": timestamp.iterationWct.seconds, "epoch_wct": timestamp.epochWct.seconds,
                "batch_wct": timestamp.batchWct.seconds,
            ] as [String: Any]
        } else {
            object["timestamp"] = NSNull()
        }
        // Only plain JSON types go in, so serialization cannot fail.
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}

extension Duration {
    /// Seconds as a float.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

extension Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
