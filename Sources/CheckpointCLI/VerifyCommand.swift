import ArgumentParser
import Checkpointing

/// `ckpt verify PATH`: exit 0 when intact, 1 with a message naming what is wrong.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a checkpoint's structure and every tensor's checksum.",
        discussion: "Exits 0 when the file is intact, 1 with a message naming what is wrong.")

    @Argument(help: "The checkpoint file, or a sharded checkpoint's manifest or folder.")
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
        let checked = file.hasChecksums ? "checksums match" : "structure valid (the file records no checksums)"
        print("ok: \(path): \(file.formatName), \(tensors.count) tensors, \(Units.bytes(bytes)); \(checked)")
    }
}
