import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

/// `ckpt inspect|verify|convert|diff|ls` with Hugging Face sharded folders.
@Suite struct HFCommandTests {
    static let fixture = Fixtures.path("sharded/hf/fp32")

    @Test func inspectShowsTheShardsAndEachTensorsShard() throws {
        let text = CLI.run(["inspect", Self.fixture])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("path:      \(Self.fixture)/model.safetensors.index.json\n"))
        #expect(text.stdout.contains("format:    hf-sharded\n"))
        #expect(text.stdout.contains("shards:    8 (tensor checksums: none recorded; commit record: no)\n"))
        #expect(text.stdout.contains("total_size: 246144, matches the tensors\n"))
        let row = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("norm.weight") })
        #expect(row.split(separator: " ", omittingEmptySubsequences: true).last == "8", "\(row)")

        let json = CLI.run(["inspect", "--json", Self.fixture + "/model.safetensors.index.json"])
        #expect(json.status == 0, "\(json.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(report["format"] as? String == "hf-sharded")
        #expect(report["shard_count"] as? Int == 8)
        #expect(report["commit_record"] as? Bool == false)
        let shards = try #require(report["shards"] as? [[String: Any]])
        #expect(shards.map { $0["path"] as? String } == (1...8).map { HuggingFaceSharded.shardName(number: $0, of: 8) })
        #expect(shards.allSatisfy { $0["tensors"] as? Int != nil && $0["checksums"] as? Bool == false })
        let tensors = try #require(report["tensors"] as? [[String: Any]])
        #expect(tensors.count == 9)
        #expect(tensors.first { $0["path"] as? String == "layers.1.q_proj.weight" }?["shard"] as? String == "model-00003-of-00008.safetensors")
    }

    @Test func verifySaysWhatItCouldCheck() throws {
        try withTemporaryFolder { folder in
            let foreign = CLI.run(["verify", Self.fixture])
            #expect(foreign.status == 0, "\(foreign.stderr)")
            #expect(foreign.stdout.contains("hf-sharded, 8 shards, 9 tensors"))
            #expect(foreign.stdout.contains("the index agrees with them"))
            #expect(foreign.stdout.contains("record no checksums"))
            #expect(!foreign.stdout.contains("checksum matches"))

            #expect(CLI.run(["convert", Self.fixture, folder + "/ours", "--format", "hf", "--max-shard-size", "40KB"]).status == 0)
            let ours = CLI.run(["verify", folder + "/ours"])
            #expect(ours.status == 0, "\(ours.stderr)")
            #expect(ours.stdout.contains("every tensor's XXH3-64 checksum matches"))
            #expect(ours.stdout.contains("every shard is the file the index committed"))

            let shard = folder + "/ours/model-00004-of-00008.safetensors"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
            bytes[bytes.count - 1] ^= 0x40
            try bytes.write(to: URL(fileURLWithPath: shard))
            let damaged = CLI.run(["verify", folder + "/ours"])
            #expect(damaged.status == 1)
            #expect(damaged.stderr.contains(shard) && damaged.stderr.contains("\"layers.1.k_proj.weight\" is corrupt"), "\(damaged.stderr)")

            try FileManager.default.removeItem(atPath: folder + "/ours/model-00002-of-00008.safetensors")
            let missing = CLI.run(["verify", folder + "/ours"])
            #expect(missing.status == 1 && missing.stderr.contains("model-00002-of-00008.safetensors"), "\(missing.stderr)")
        }
    }

    @Test func convertWritesAndReadsHuggingFaceFolders() throws {
        try withTemporaryFolder { folder in
            let composer = Fixtures.path("composer/ep1-ba4-rank0.pt")
            let export = CLI.run(["convert", composer, folder + "/{run_name}-hf", "--format", "hf", "--max-shard-size", "0.5KB"])
            #expect(export.status == 0, "\(export.stderr)")
            #expect(export.stdout == folder + "/fixture-run-hf/model.safetensors.index.json\n")
            #expect(export.stderr.contains("holds the model's tensors only; state/optimizers"), "\(export.stderr)")
            let model = try loadCheckpoint(composer).model
            let exported = try CheckpointFile.open(folder + "/fixture-run-hf")
            let names = try #require(exported.tree.dictValue).map { ($0.key, $0.value) }
            #expect(Dictionary(uniqueKeysWithValues: names) == Dictionary(uniqueKeysWithValues: model.map { ($0.key, $0.value) }))
            #expect((exported.huggingFaceShards?.shards.count ?? 0) > 1)

            // An OUT ending in .safetensors.index.json means Hugging Face too.
            let byIndex = CLI.run(["convert", composer, folder + "/named/weights.safetensors.index.json"])
            #expect(byIndex.status == 0, "\(byIndex.stderr)")
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: folder + "/named").sorted()
                    == ["weights-00001-of-00001.safetensors", "weights.safetensors.index.json"])

            // Back to one native file: the tree as it is, names at the root; diff finds no difference.
            let native = CLI.run(["convert", folder + "/fixture-run-hf", folder + "/model.safetensors"])
            #expect(native.status == 0, "\(native.stderr)")
            let diff = CLI.run(["diff", folder + "/fixture-run-hf", folder + "/model.safetensors"])
            #expect(diff.status == 0 && diff.stdout.hasPrefix("identical: \(model.count) tensors"), "\(diff.stdout)\(diff.stderr)")
            let differ = CLI.run(["diff", folder + "/fixture-run-hf", Self.fixture])
            #expect(differ.status == 2)
        }
    }

    @Test func convertRefusesOptionsThatDoNotGoTogether() throws {
        let composer = Fixtures.path("composer/ep1-ba4-rank0.pt")
        let noFormat = CLI.run(["convert", composer, "/tmp/never", "--max-shard-size", "5GB"])
        #expect(noFormat.status == 64 && noFormat.stderr.contains("--max-shard-size goes with --format hf"), "\(noFormat.stderr)")
        let badSize = CLI.run(["convert", composer, "/tmp/never", "--format", "hf", "--max-shard-size", "5G"])
        #expect(badSize.status == 64 && badSize.stderr.contains("is not a shard size"), "\(badSize.stderr)")
        let sharded = CLI.run(["convert", composer, "/tmp/never-{rank}", "--format", "hf", "--sharded"])
        #expect(sharded.status == 64, "\(sharded.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never") && !FileManager.default.fileExists(atPath: "/tmp/never-0"))
    }

    @Test func lsListsAHuggingFaceCheckpointAsOneRow() throws {
        try withTemporaryFolder { folder in
            try FileManager.default.copyItem(atPath: Self.fixture, toPath: folder + "/fp32")
            try saveCheckpoint(composerLikeModel(), filename: folder + "/ep1.safetensors")
            func rows(_ path: String) throws -> [[String: Any]] {
                let listed = CLI.run(["ls", "--json", path])
                #expect(listed.status == 0, "\(listed.stderr)")
                let object = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]
                return object?["checkpoints"] as? [[String: Any]] ?? []
            }
            // A subfolder holding one: a row named after the folder.
            let outer = try rows(folder)
            #expect(outer.map { $0["name"] as? String } == ["ep1.safetensors", "fp32/"], "\(outer)")
            let row = try #require(outer.last)
            #expect(row["format"] as? String == "hf-sharded x8" && row["complete"] as? Bool == true)
            // The folder itself: its index is the row, its shards are not listed.
            let inner = try rows(folder + "/fp32")
            #expect(inner.map { $0["name"] as? String } == ["model.safetensors.index.json"], "\(inner)")
            #expect(inner.first?["bytes"] as? Int == row["bytes"] as? Int)

            try FileManager.default.removeItem(atPath: folder + "/fp32/model-00005-of-00008.safetensors")
            let broken = try #require(try rows(folder).last)
            #expect(broken["complete"] as? Bool == false && (broken["problem"] as? String ?? "").contains("missing"), "\(broken)")
        }
    }

    /// A small training state to list beside the Hugging Face folder.
    func composerLikeModel() throws -> TrainingState {
        TrainingState(model: ["w": .tensor(try Tensor(shape: [2], scalars: [Float(1), 2]))], timestamp: Timestamp(epoch: 1))
    }
}
