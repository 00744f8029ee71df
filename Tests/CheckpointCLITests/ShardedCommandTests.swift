import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

/// `ckpt convert --sharded`, and inspect, verify and convert of a sharded checkpoint, on one
/// process (the MPI tests run them on several).
@Suite struct ShardedCommandTests {
    @Test func convertShardedThenBackKeepsEveryValue() throws {
        try withTemporaryFolder { folder in
            let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
            let split = CLI.run(["convert", "--sharded", original, folder + "/sharded/ep{epoch}-ba{batch}-rank{rank}.pt"])
            #expect(split.status == 0, "\(split.stderr)")
            #expect(split.stdout == folder + "/sharded/ep1-ba4-rank0.pt.tar\n")

            let inspect = CLI.run(["inspect", "--json", folder + "/sharded"])
            #expect(inspect.status == 0, "\(inspect.stderr)")
            let report = try #require(JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            #expect(report["format"] as? String == "sharded torch, 1 rank")
            #expect(report["run_name"] as? String == "fixture-run")
            #expect((report["shards"] as? [[String: Any]])?.first?["path"] as? String == "ep1-ba4-rank0.pt.tar")

            let verify = CLI.run(["verify", folder + "/sharded"])
            #expect(verify.status == 0 && verify.stdout.hasPrefix("ok: "), "\(verify.stderr)")

            let back = CLI.run(["convert", folder + "/sharded", folder + "/back.pt"])
            #expect(back.status == 0, "\(back.stderr)")
            #expect(try loadCheckpoint(folder + "/back.pt").tree == loadCheckpoint(original).tree)
        }
    }

    @Test func lsShowsASharedCheckpointAsOneRow() throws {
        try withTemporaryFolder { folder in
            let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
            #expect(CLI.run(["convert", "--sharded", original, folder + "/ep{epoch}-ba{batch}-rank{rank}"]).status == 0)
            func rows() throws -> [[String: Any]] {
                let listed = CLI.run(["ls", "--json", folder])
                let object = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any]
                return object?["checkpoints"] as? [[String: Any]] ?? []
            }
            let intact = try rows()
            #expect(intact.count == 1, "\(intact)")
            #expect(intact.first?["name"] as? String == "ep1-ba4-rank0.tar.manifest.json")
            #expect(intact.first?["format"] as? String == "sharded x1" && intact.first?["complete"] as? Bool == true)
            #expect(intact.first?["batch"] as? Int == 4)
            try FileManager.default.removeItem(atPath: folder + "/ep1-ba4-rank0.tar")
            let broken = try rows()
            #expect(broken.first?["complete"] as? Bool == false && (broken.first?["problem"] as? String ?? "").contains("missing"))
        }
    }

    @Test func verifyNamesTheDamagedShard() throws {
        try withTemporaryFolder { folder in
            let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
            #expect(CLI.run(["convert", "--sharded", original, folder + "/s/rank{rank}"]).status == 0)
            let shard = folder + "/s/rank0.tar"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
            let weight = try #require(CheckpointFile.open(shard).tree[path: "state/model/module.0.weight"]?.tensorValue)
            let at = try #require(bytes.firstRange(of: Data(weight.bytes))).lowerBound
            bytes[at + 100] ^= 0x10
            try bytes.write(to: URL(fileURLWithPath: shard + ".bad"))
            try FileManager.default.moveItem(atPath: shard, toPath: shard + ".good")
            try FileManager.default.moveItem(atPath: shard + ".bad", toPath: shard)
            let damaged = CLI.run(["verify", folder + "/s"])
            #expect(damaged.status == 1)
            #expect(damaged.stderr.contains(shard) && damaged.stderr.contains("module.0.weight"), "\(damaged.stderr)")
            try FileManager.default.removeItem(atPath: shard)
            try FileManager.default.moveItem(atPath: shard + ".good", toPath: shard)
        }
    }

    @Test func launcherEnvironmentsThatContradictOrLackAGroupAreRefusedBeforeWriting() throws {
        try withTemporaryFolder { folder in
            let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
            let contradicting = try CLI.runProcess(
                ["convert", "--sharded", original, folder + "/rank{rank}"],
                environment: ["RANK": "1", "WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"])
            #expect(contradicting.status == 1)
            #expect(contradicting.stderr.contains("contradicts itself") && contradicting.stderr.contains("RANK"), "\(contradicting.stderr)")
            let contents = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(contents.isEmpty)
        }
    }
}
