@testable import Checkpointing

/// A PyTorch Distributed Checkpoint's `.metadata`: the protocol-4 pickle under DCP's
/// vocabulary, the dataclass decoder, and the tree its key paths rebuild.
enum DCPTargets {
    static let metadata = FuzzTarget(
        name: "dcp-metadata",
        summary: "DCPMetadata.read: .metadata's protocol-4 pickle under DCP's allow-list, its dataclasses, chunk tiling, storage locations and key paths; an accepted one must write and read back the same",
        fixtures: ["sharded/dcp/*/.metadata"],
        seeds: {
            let location = { (offset: Int) in DCPMetadata.Location(file: "__0_0.distcp", offset: offset, length: 1600) }
            let entries: [(fqn: String, path: [DCPKey], entry: DCPMetadataPickler.Entry)] = [
                ("model.fc.weight", [.name("model"), .name("fc.weight")],
                 .tensor(dtype: .bfloat16, shape: [4, 3], chunks: [(.rows(0..<3, of: [4, 3]), location(0)), (.rows(3..<4, of: [4, 3]), location(1600))])),
                ("optim.param_groups.0.lr", [.name("optim"), .name("param_groups"), .index(0), .name("lr")], .value(location(3200))),
                ("step", [.name("step")], .tensor(dtype: .int64, shape: [], chunks: [(.whole([]), location(4800))])),
            ]
            return [("written.metadata", DCPMetadataPickler.pickle(entries, checkpointID: "checkpoint", saveID: "seed"))]
        },
        run: { bytes in
            guard let metadata = try? DCPMetadata.read(bytes, limits: TorchTargets.limits) else { return }
            // Rebuilding the tree either works or says why, whatever the key paths are.
            _ = try? DCPKeyPaths.tree(of: metadata, leaves: [:])
            // What this library would write for the metadata it read reads back as the same.
            let entries = metadata.fqns.compactMap { fqn -> (fqn: String, path: [DCPKey], entry: DCPMetadataPickler.Entry)? in
                switch metadata.items[fqn] {
                case .tensor(let tensor)?:
                    (fqn, DCPKeyPaths.keyPath(of: fqn, in: metadata), .tensor(dtype: tensor.dtype, shape: tensor.shape, chunks: tensor.chunks.map { ($0.box, $0.location) }))
                case .value(let location)?:
                    (fqn, DCPKeyPaths.keyPath(of: fqn, in: metadata), .value(location))
                case nil:
                    nil
                }
            }
            let written = DCPMetadataPickler.pickle(entries, checkpointID: "checkpoint", saveID: metadata.saveID ?? "")
            let reread = FuzzCheck.succeeds("reading the .metadata as the writer writes it") { () throws(CheckpointError) in
                try rethrowingCheckpointError { try written.withUnsafeBytes { try DCPMetadata.read($0, limits: TorchTargets.limits) } }
            }
            FuzzCheck.expect(
                reread.fqns == metadata.fqns && reread.items == metadata.items
                    && metadata.fqns.allSatisfy { DCPKeyPaths.keyPath(of: $0, in: reread) == DCPKeyPaths.keyPath(of: $0, in: metadata) },
                "the .metadata written back reads as the same entries, locations and key paths")
        }
    )
}
