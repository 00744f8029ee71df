import Foundation

@testable import Checkpointing

/// The commit manifest of a sharded checkpoint.
enum ShardingTargets {
    static let shardManifest = FuzzTarget(
        name: "shard-manifest",
        summary: "ShardManifest: the JSON and validate() (shards, tensors, pieces that tile every tensor); a valid one must re-encode to itself",
        seeds: {
            let manifest = ShardManifest(
                worldSize: 2, runName: "run", epoch: 1, batch: 4,
                shards: [
                    .init(rank: 0, path: "ep1-rank0.tar", size: 30720, digest: "00ff00ff00ff00ff"),
                    .init(rank: 1, path: "ep1-rank1.tar", size: 30720, digest: "0123456789abcdef"),
                ],
                tensors: [
                    .init(
                        path: "state/model/fc.weight", keys: [.string("state"), .string("model"), .string("fc.weight")],
                        dtype: .float32, shape: [4, 3],
                        pieces: [.init(rank: 0, offset: [0, 0], shape: [2, 3]), .init(rank: 1, offset: [2, 0], shape: [2, 3])]),
                    .init(
                        path: "state/optimizers/AdamW/state/0/step", keys: [.string("state"), .string("optimizers"), .string("AdamW"), .string("state"), .int(0), .string("step")],
                        dtype: .int64, shape: [], pieces: [.init(rank: 0, offset: [], shape: []), .init(rank: 1, offset: [], shape: [])]),
                ])
            return [("manifest.json", encode(manifest))]
        },
        run: { bytes in
            guard let manifest = try? JSONDecoder().decode(ShardManifest.self, from: Data(bytes)) else { return }
            guard (try? manifest.validate()) != nil else { return }
            // What a load accepted, written back as rank 0 writes it, is the same manifest.
            let again = try? JSONDecoder().decode(ShardManifest.self, from: Data(encode(manifest)))
            FuzzCheck.expect(again == manifest, "a valid manifest re-encodes to itself")
        }
    )

    /// The manifest as ShardManifest.write encodes it.
    private static func encode(_ manifest: ShardManifest) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(manifest))
        } catch {
            fatalError("fuzz property violated: a valid manifest does not encode: \(error)")
        }
    }
}
