import ArgumentParser
import Checkpointing
import CheckpointToolSupport
import Crypto
import Foundation

/// `ckpt inspect PATH [--json] [--hashes]`.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's format, run name, timestamp and tensors.",
        discussion: """
            For a sharded checkpoint (its manifest, or the folder that holds it), shows its shards \
            and every tensor's global shape and number of pieces. For a Hugging Face sharded \
            checkpoint (its folder or model.safetensors.index.json), shows its shards (size, \
            tensors, header digest, whether they record checksums) and the shard of every tensor. \
            For a PyTorch Distributed Checkpoint (DCP) folder, shows its data files and every \
            tensor's chunks.

            In an object store (s3://...), only the index is fetched, with ranged requests (a \
            compressed file is downloaded whole, and so is any file with --hashes); --json \
            reports the bytes downloaded.
            """)

    @Argument(help: "The checkpoint file, a sharded checkpoint's manifest or folder, a Hugging Face checkpoint's folder or index, or a DCP folder.")
    var path: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @OptionGroup var progress: ProgressOptions

    @Flag(help: "Add the SHA-256 of each tensor's raw little-endian row-major bytes.")
    var hashes = false

    @OptionGroup var limits: ReadingLimitsFlags

    func run() throws {
        let before = ObjectStores.transfers.snapshot
        var report = try InspectReport(path: path, hashes: hashes, limits: limits.readingLimits)
        report.bytesDownloaded = (ObjectStores.transfers.snapshot - before).bytesDownloaded
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
        /// For a Hugging Face checkpoint, the shard that holds the tensor whole (its one chunk).
        var shard: HuggingFaceShardRef?
        /// For a DCP checkpoint, the boxes of the tensor's chunks and the data file of each.
        var chunks: [(box: TensorSlice, file: String)]? = nil
    }

    /// Where a tensor of a Hugging Face checkpoint is: shard `number` (1-based), named `name`.
    struct HuggingFaceShardRef {
        var number: Int
        var name: String
    }

    /// The shards of a sharded checkpoint.
    struct ShardRow {
        /// The rank that wrote it; for a Hugging Face checkpoint, the shard's number (1-based).
        var rank: Int
        var path: String
        var bytes: Int
        var digest: String
        /// For a Hugging Face checkpoint: how many tensors the shard holds, and whether it
        /// records their checksums.
        var tensors: Int? = nil
        var checksums: Bool? = nil
    }

    var path: String
    var format: String
    /// The codec of a compressed file.
    var compression: String?
    /// The member of a tar archive that holds the checkpoint.
    var tarMember: String?
    var fileBytes: Int
    var runName: String?
    var timestamp: Timestamp?
    var tensors: [TensorRow]
    var shards: [ShardRow]? = nil
    /// For a float-split file, how each dtype compressed.
    var compressionShares: [CompressionShare] = []
    /// For a Hugging Face checkpoint, what its index says beyond the shards.
    var huggingFace: (committed: Bool, statedTotalSize: Int?)? = nil
    /// What reading the checkpoint downloaded from an object store.
    var bytesDownloaded = 0

    init(path: String, hashes: Bool, limits: ReadingLimits = ReadingLimits()) throws {
        if let manifestPath = try ShardManifest.locate(path) {
            try self.init(manifestPath: manifestPath, hashes: hashes, limits: limits)
        } else {
            try self.init(file: path, hashes: hashes, limits: limits)
        }
    }

    /// One checkpoint file, or a Hugging Face checkpoint's shards.
    private init(file path: String, hashes: Bool, limits: ReadingLimits) throws {
        let file = try hashes ? CheckpointFile.open(path, limits: limits) : CheckpointFile.openIndex(path, limits: limits)
        let hf = file.huggingFaceShards
        let dcp = file.distributedCheckpoint
        let chunks = Dictionary(
            dcp?.tensors.map { ($0.path, $0.chunks.map { (box: $0.box, file: $0.file) }) } ?? [], uniquingKeysWith: { first, _ in first })
        let tensors = file.tree.tensors.map { entry in
            // A Hugging Face checkpoint's tree holds its tensors at the root, by name.
            let shard = hf.flatMap { hf in
                hf.shardOfTensor[entry.path].map { HuggingFaceShardRef(number: $0 + 1, name: hf.shards[$0].name) }
            }
            return TensorRow(
                path: entry.path, dtype: entry.tensor.dtype.rawValue, shape: entry.tensor.shape,
                bytes: entry.tensor.byteCount,
                sha256: hashes ? entry.tensor.withUnsafeBytes { SHA256.hash(data: $0).hexString } : nil, shard: shard,
                chunks: dcp == nil ? nil : chunks[entry.path] ?? [])
        }
        var format = file.formatName
        if let dcp { format += ", \(dcp.files.count) data file\(dcp.files.count == 1 ? "" : "s")" }
        self.init(path: file.path, describing: file, format: format, fileBytes: file.byteCount, tensors: tensors)
        if let dcp {
            // DCP names each data file after the rank that wrote it; it records no digest.
            shards = dcp.files.enumerated().map { index, data in
                ShardRow(rank: Self.writerRank(data.name) ?? index, path: data.name, bytes: data.size, digest: "-")
            }
        }
        if let hf {
            shards = hf.shards.enumerated().map { position, shard in
                ShardRow(
                    rank: position + 1, path: shard.name, bytes: shard.byteCount, digest: shard.headerDigest,
                    tensors: shard.tensorCount, checksums: shard.hasChecksums)
            }
            huggingFace = (hf.isCommitRecorded, hf.statedTotalSize)
        }
    }

    /// The rank in a DCP data file's name, `__<rank>_<n>.distcp`.
    private static func writerRank(_ name: String) -> Int? {
        guard name.hasPrefix("__") else { return nil }
        return name.dropFirst(2).split(separator: "_").first.flatMap { Int($0) }
    }

    /// A sharded checkpoint: the manifest, and rank 0's shard for the run name and timestamp.
    private init(manifestPath: String, hashes: Bool, limits: ReadingLimits) throws {
        guard !hashes else {
            throw CheckpointError(
                .invalidArgument, "--hashes needs whole tensors; convert the sharded checkpoint to one file first")
        }
        let manifest = try ShardManifest.read(manifestPath)
        let first = try CheckpointFile.openIndex(manifest.shardPath(rank: 0, manifestPath: manifestPath), limits: limits)
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
        compressionShares = file.compressionShares
        tarMember = file.layers.lazy.compactMap { if case .tar(let member) = $0 { member } else { nil } }.first
        let state = try? TrainingState(tree: file.tree)
        let stateDict = file.tree.dictValue?["state"]?.dictValue
        runName = stateDict?["run_name"] != nil ? state?.runName : nil
        timestamp = stateDict?["timestamp"] != nil ? state?.timestamp : nil
    }

    var totalTensorBytes: Int { tensors.reduce(0) { $0 + $1.bytes } }

    /// Whether the tensors are a DCP checkpoint's, with chunks.
    private var chunked: Bool { tensors.contains { $0.chunks != nil } }

    /// A tensor's chunks in a cell: their count, and each box's ranges when there are several.
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
        if let huggingFace, let shards {
            let checksummed = shards.filter { $0.checksums == true }.count
            let checksums = checksummed == shards.count ? "every tensor" : checksummed == 0 ? "none recorded" : "\(checksummed) of \(shards.count) shards"
            lines.append("shards:    \(shards.count) (tensor checksums: \(checksums); commit record: \(huggingFace.committed ? "yes" : "no"))")
            let stated = huggingFace.statedTotalSize.map { $0 == totalTensorBytes ? "\($0), matches the tensors" : "\($0), the tensors hold \(totalTensorBytes)" }
            lines.append("total_size: \(stated ?? "not stated")")
        }
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
        if let shards, huggingFace != nil {
            var table = [["shard", "file", "bytes", "tensors", "header xxh3", "checksums"]]
            for shard in shards {
                table.append([
                    String(shard.rank), shard.path, String(shard.bytes), String(shard.tensors ?? 0), shard.digest,
                    shard.checksums == true ? "yes" : "no",
                ])
            }
            lines.append(Units.table(table, rightAligned: [0, 2, 3]))
            lines.append("")
        } else if let shards {
            var table = [["rank", chunked ? "data file" : "shard", "bytes", "digest"]]
            for shard in shards { table.append([String(shard.rank), shard.path, String(shard.bytes), shard.digest]) }
            lines.append(Units.table(table, rightAligned: [0, 2]))
            lines.append("")
        }
        let sharded = shards != nil && huggingFace == nil
        var header = ["tensor", "dtype", sharded ? "global shape" : "shape", "bytes"]
        if sharded { header.append(chunked ? "chunks" : "shards") }
        if huggingFace != nil { header.append("shard") }
        if tensors.first?.sha256 != nil { header.append("sha256") }
        var table = [header]
        for row in tensors {
            let shape = "[" + row.shape.map(String.init).joined(separator: ", ") + "]"
            var cells = [row.path, row.dtype, shape, String(row.bytes)]
            if let pieces = row.pieces { cells.append(String(pieces)) }
            if let shard = row.shard { cells.append(String(shard.number)) }
            if let chunks = row.chunks { cells.append(Self.describe(chunks)) }
            if let sha256 = row.sha256 { cells.append(sha256) }
            table.append(cells)
        }
        lines.append(Units.table(table, rightAligned: shards != nil && !chunked ? [3, 4] : [3]))
        lines.append("")
        lines.append("total: \(tensors.count) tensors, \(Units.bytes(totalTensorBytes)) of tensor data")
        if !compressionShares.isEmpty {
            var shares = [["dtype", "bytes", "compressed", "ratio"]]
            for share in compressionShares {
                shares.append([
                    share.dtype?.rawValue ?? "(header)", String(share.bytes), String(share.compressedBytes), String(format: "%.3f", share.ratio),
                ])
            }
            lines.append("")
            lines.append("compression by dtype:")
            lines.append(Units.table(shares, rightAligned: [1, 2, 3]))
        }
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
            "bytes_downloaded": bytesDownloaded,
            "run_name": runName.map { $0 as Any } ?? NSNull(),
            "tensors": tensors.map { row -> [String: Any] in
                var entry: [String: Any] = ["path": row.path, "dtype": row.dtype, "shape": row.shape, "bytes": row.bytes]
                if let sha = row.sha256 { entry["sha256"] = sha }
                if let pieces = row.pieces { entry["shards"] = pieces }
                if let shard = row.shard { entry["shard"] = shard.name }
                if let chunks = row.chunks {
                    entry["chunks"] = chunks.map { ["offset": $0.box.offset, "shape": $0.box.shape, "file": $0.file] as [String: Any] }
                }
                return entry
            },
        ]
        if !compressionShares.isEmpty {
            object["compression_by_dtype"] = compressionShares.map { share -> [String: Any] in
                ["dtype": share.dtype.map { $0.rawValue as Any } ?? NSNull(), "bytes": share.bytes, "compressed_bytes": share.compressedBytes, "ratio": share.ratio]
            }
        }
        if let shards, let huggingFace {
            object["shard_count"] = shards.count
            object["commit_record"] = huggingFace.committed
            object["stated_total_size"] = huggingFace.statedTotalSize.map { $0 as Any } ?? NSNull()
            object["shards"] = shards.map {
                [
                    "number": $0.rank, "path": $0.path, "bytes": $0.bytes, "tensors": $0.tensors ?? 0,
                    "header_xxh3": $0.digest, "checksums": $0.checksums ?? false,
                ] as [String: Any]
            }
        } else if let shards {
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

extension Digest {
    var hexString: String { map { String(format: "%02x", $0) }.joined() }
}
