import ArgumentParser
import Checkpointing
import CheckpointToolSupport
import Foundation

/// `ckpt verify PATH [--json]`: exit 0 when intact, 1 with a message naming what is wrong.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a checkpoint's structure and every tensor's checksum.",
        discussion: """
            Exits 0 when the file is intact, 1 with a message naming what is wrong. A Hugging Face \
            sharded checkpoint (its folder or index) is checked as far as it records: the index \
            against every shard's header always, every tensor's checksum and every shard's \
            identity when swift-checkpointing wrote it; the message says which. A PyTorch \
            Distributed Checkpoint (DCP) folder is checked for structure (its .metadata against its \
            data files, every archive holding what .metadata says) and every archive's CRC-32s: \
            DCP records no other checksums. Every byte is read: a checkpoint in an object store \
            is downloaded whole, each shard of a sharded one (--json reports the bytes downloaded).
            """)

    @Argument(help: "The checkpoint file, a sharded checkpoint's manifest or folder, a Hugging Face checkpoint's folder or index, or a DCP folder.")
    var path: String

    @Flag(help: "Print one JSON object instead of a line.")
    var json = false

    @OptionGroup var progress: ProgressOptions

    @OptionGroup var limits: ReadingLimitsFlags

    func run() throws {
        let before = ObjectStores.transfers.snapshot
        let summary: String
        var object: [String: Any] = ["ok": true]
        if let manifestPath = try ShardManifest.locate(path) {
            let manifest = try ShardManifest.read(manifestPath)
            try manifest.verifyShards(manifestPath: manifestPath, limits: limits.readingLimits)
            let bytes = manifest.shards.reduce(0) { $0 + $1.size }
            summary =
                "ok: \(manifestPath): sharded, \(manifest.worldSize) shards (\(Units.bytes(bytes))), \(manifest.tensors.count) tensors; every shard's size, file checksum and tensor checksums match, and the pieces make up every tensor"
            object.merge(["path": manifestPath, "format": "sharded", "shards": manifest.worldSize, "tensor_count": manifest.tensors.count, "file_bytes": bytes]) { $1 }
        } else {
            let file = try CheckpointFile.open(path, limits: limits.readingLimits)
            try file.verify()
            let tensors = file.tree.tensors
            let bytes = tensors.reduce(0) { $0 + $1.tensor.byteCount }
            if let shards = file.huggingFaceShards {
                summary = "ok: \(file.path): \(Self.summary(of: shards, tensors: tensors.count, bytes: bytes))"
            } else if let dcp = file.distributedCheckpoint {
                let chunks = dcp.tensors.reduce(0) { $0 + $1.chunks.count }
                summary =
                    "ok: \(file.path): dcp, \(dcp.files.count) data file\(dcp.files.count == 1 ? "" : "s") (\(Units.bytes(dcp.byteCount))), \(dcp.tensors.count) tensors in \(chunks) chunks, \(dcp.valueCount) other values, \(Units.bytes(bytes)); structure valid and every archive's CRC-32 matches (DCP records no other checksums)"
            } else {
                let checked = file.hasChecksums ? "checksums match" : "structure valid (the file records no checksums)"
                summary = "ok: \(path): \(file.formatName), \(tensors.count) tensors, \(Units.bytes(bytes)); \(checked)"
            }
            object.merge(["path": path, "format": file.formatName, "tensor_count": tensors.count, "tensor_bytes": bytes, "checksums": file.hasChecksums]) { $1 }
        }
        guard json else {
            print(summary)
            return
        }
        object["bytes_downloaded"] = (ObjectStores.transfers.snapshot - before).bytesDownloaded
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }

    /// What was checked in a Hugging Face checkpoint, in words.
    static func summary(of checkpoint: HuggingFaceShards, tensors: Int, bytes: Int) -> String {
        var parts = [
            "hf-sharded, \(checkpoint.shards.count) shard\(checkpoint.shards.count == 1 ? "" : "s"), \(tensors) tensors, \(Units.bytes(bytes))",
            "every shard's safetensors header is valid and the index agrees with them (each tensor of the weight_map is in the shard it names; none is missing, unlisted or in two shards)",
        ]
        if checkpoint.hasChecksums {
            parts.append("every tensor's XXH3-64 checksum matches")
        } else {
            parts.append(
                "the shards record no checksums (not written by swift-checkpointing), so the tensors' bytes could not be checked")
        }
        if checkpoint.isCommitRecorded {
            parts.append("every shard is the file the index committed (size and header digest)")
        }
        switch checkpoint.statedTotalSize {
        case bytes?: parts.append("metadata.total_size matches")
        case let stated?:
            parts.append("metadata.total_size says \(stated) bytes where the tensors hold \(bytes) (informational: loaders ignore it)")
        case nil: parts.append("no metadata.total_size")
        }
        return parts.joined(separator: "; ")
    }
}
