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
            let split = try CLI.run(["convert", "--sharded", original, folder + "/sharded/ep{epoch}-ba{batch}-rank{rank}.pt"])
            #expect(split.status == 0, "\(split.stderr)")
            #expect(split.stdout == folder + "/sharded/ep1-ba4-rank0.pt.tar\n")

            let inspect = try CLI.run(["inspect", "--json", folder + "/sharded"])
            #expect(inspect.status == 0, "\(inspect.stderr)")
            let report = try #require(JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            #expect(report["format"] as? String == "sharded torch, 1 rank")
            #expect(report["run_name"] as? String == "fixture-run")
            #expect((report["shards"] as? [[String: Any]])?.first?["path"] as? String == "ep1-ba4-rank0.pt.tar")

            let verify = try CLI.run(["verify", folder + "/sharded"])
            #expect(verify.status == 0 && verify.stdout.hasPrefix("ok: "), "\(verify.stderr)")

            let back = try CLI.run(["convert", folder + "/sharded", folder + "/back.pt"])
            #expect(back.status == 0, "\(back.stderr)")
            #expect(try loadCheckpoint(folder + "/back.pt").tree == loadCheckpoint(original).tree)
        }
    }

    @Test func verifyNamesTheDamagedShard() throws {
        try withTemporaryFolder { folder in
            let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
            #expect(try CLI.run(["convert", "--sharded", original, folder + "/s/rank{rank}"]).status == 0)
            let shard = folder + "/s/rank0.tar"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
            bytes[bytes.count - 1500] ^= 0x10
            try bytes.write(to: URL(fileURLWithPath: shard + ".bad"))
            try FileManager.default.moveItem(atPath: shard, toPath: shard + ".good")
            try FileManager.default.moveItem(atPath: shard + ".bad", toPath: shard)
            let damaged = try CLI.run(["verify", folder + "/s"])
            #expect(damaged.status == 1)
            #expect(damaged.stderr.contains(shard) && damaged.stderr.contains("XXH3"), "\(damaged.stderr)")
            try FileManager.default.removeItem(atPath: shard)
            try FileManager.default.moveItem(atPath: shard + ".good", toPath: shard)
        }
    }

    @Test func launcherEnvironmentsThatContradictOrLackAGroupAreRefusedBeforeWriting() throws {
        try withTemporaryFolder { folder in
            let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
            let contradicting = try CLI.run(
                ["convert", "--sharded", original, folder + "/rank{rank}"],
                environment: ["RANK": "1", "WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"])
            #expect(contradicting.status == 1)
            #expect(contradicting.stderr.contains("contradicts itself") && contradicting.stderr.contains("RANK"), "\(contradicting.stderr)")
            let contents = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(contents.isEmpty)
        }
    }
}
