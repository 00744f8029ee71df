import ArgumentParser
import Checkpointing

/// `ckpt verify PATH`: exit 0 when intact, 1 with a message naming what is wrong.
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
            DCP records no other checksums.
            """)

    @Argument(help: "The checkpoint file, a sharded checkpoint's manifest or folder, a Hugging Face checkpoint's folder or index, or a DCP folder.")
    var path: String

    @OptionGroup var decompression: DecompressionFlags

    func run() throws {
        if let manifestPath = try ShardManifest.locate(path) {
            let manifest = try ShardManifest.read(manifestPath)
            try manifest.verifyShards(manifestPath: manifestPath, decompressionLimits: decompression.limits)
            let bytes = manifest.shards.reduce(0) { $0 + $1.size }
            print(
                "ok: \(manifestPath): sharded, \(manifest.worldSize) shards (\(Units.bytes(bytes))), \(manifest.tensors.count) tensors; every shard's size, file checksum and tensor checksums match, and the pieces make up every tensor"
            )
            return
        }
        let file = try CheckpointFile.open(path, decompressionLimits: decompression.limits)
        try file.verify()
        let tensors = file.tree.tensors
        let bytes = tensors.reduce(0) { $0 + $1.tensor.byteCount }
        if let shards = file.huggingFaceShards {
            print("ok: \(file.path): \(Self.summary(of: shards, tensors: tensors.count, bytes: bytes))")
            return
        }
        if let dcp = file.distributedCheckpoint {
            let chunks = dcp.tensors.reduce(0) { $0 + $1.chunks.count }
            print(
                "ok: \(file.path): dcp, \(dcp.files.count) data file\(dcp.files.count == 1 ? "" : "s") (\(Units.bytes(dcp.byteCount))), \(dcp.tensors.count) tensors in \(chunks) chunks, \(dcp.valueCount) other values, \(Units.bytes(bytes)); structure valid and every archive's CRC-32 matches (DCP records no other checksums)"
            )
            return
        }
        let checked = file.hasChecksums ? "checksums match" : "structure valid (the file records no checksums)"
        print("ok: \(path): \(file.formatName), \(tensors.count) tensors, \(Units.bytes(bytes)); \(checked)")
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
