import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

extension MPIProcessGroupTests {
    /// Sharded checkpoints across real processes: saved by 4 ranks, loaded
    /// on 1 to 4, resharded by `ckpt convert`, and a rank killed mid-save.
    @Suite struct ShardedMPITests {
        private static func expectEveryRank(_ run: MPIRun, of processes: Int, says phrase: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let lines = run.lines
            for rank in 0..<processes {
                #expect(lines[rank]?.contains { $0.contains(phrase) } == true, "rank \(rank):\n\(run.transcript)", sourceLocation: sourceLocation)
            }
            #expect(!run.stdout.contains("FAILED"), "\(run.transcript)", sourceLocation: sourceLocation)
        }

        @Test func savedByFourRanksLoadsBitIdenticallyOnOneToFour() throws {
            try withTemporaryFolder { folder in
                let save = try MPILauncher.run(["sharded-save", "--folder", folder], processes: 4)
                #expect(save.status == 0, "\(save.transcript)")
                Self.expectEveryRank(save, of: 4, says: "every rank got every path")
                #expect(FileManager.default.fileExists(atPath: folder + "/ep1-ba4-rank0.tar.manifest.json"))

                for processes in 1...4 {
                    let load = try MPILauncher.run(["sharded-load", "--folder", folder], processes: processes)
                    #expect(load.status == 0, "\(load.transcript)")
                    Self.expectEveryRank(load, of: processes, says: "bit-identical to the original")
                }
            }
        }

        @Test func convertShardsReshardsAndJoins() throws {
            try withTemporaryFolder { folder in
                let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
                let ckpt = try MPILauncher.ckpt()
                let split = try MPILauncher.run(
                    ["convert", "--sharded", original, folder + "/four/rank{rank}"], processes: 4, program: ckpt)
                #expect(split.status == 0, "\(split.transcript)")
                #expect(split.stdout == (0..<4).map { "\(folder)/four/rank\($0).tar\n" }.joined(), "rank 0 prints every path")
                let manifest = try ShardManifest.read(folder + "/four/rank0.tar" + ShardManifest.suffix)
                #expect(manifest.worldSize == 4)
                // 16 rows split 4 ways; 3 rows cannot be, so rank 0 holds them whole.
                #expect(manifest.tensors.first { $0.path == "state/model/module.0.weight" }?.pieces.map(\.shape) == [[4, 8], [4, 8], [4, 8], [4, 8]])
                #expect(manifest.tensors.first { $0.path == "state/model/module.2.weight" }?.pieces.map(\.rank) == [0])

                let reshard = try MPILauncher.run(
                    ["convert", "--sharded", folder + "/four", folder + "/three/rank{rank}.pt"], processes: 3, program: ckpt)
                #expect(reshard.status == 0, "\(reshard.transcript)")
                let three = try ShardManifest.read(folder + "/three/rank0.pt.tar" + ShardManifest.suffix)
                #expect(three.tensors.first { $0.path == "state/model/module.0.weight" }?.pieces.map(\.shape) == [[6, 8], [5, 8], [5, 8]])

                let join = try MPILauncher.run(["convert", folder + "/three", folder + "/whole.pt"], processes: 2, program: ckpt)
                #expect(join.status == 0, "\(join.transcript)")
                #expect(try loadCheckpoint(folder + "/whole.pt").tree == loadCheckpoint(original).tree)
            }
        }

        /// Saves in the background run their collectives on the saver's thread.
        @Test func asynchronousShardedSavesCommitAndResume() throws {
            try withTemporaryFolder { folder in
                let train = try MPILauncher.run(["sharded-saver-train", "--folder", folder, "--variant", "async"], processes: 3)
                #expect(train.status == 0, "\(train.transcript)")
                Self.expectEveryRank(train, of: 3, says: "saved 2 sharded checkpoints")
                let resumed = try MPILauncher.run(["sharded-saver-resume", "--folder", folder], processes: 3)
                #expect(resumed.status == 0, "\(resumed.transcript)")
                Self.expectEveryRank(resumed, of: 3, says: "resumed at batch 8")
            }
        }

        /// Rank 2 of 4 dies writing its shard of the batch-8 checkpoint: the others fail with the
        /// timeout error, no manifest is written, and autoresume on 4 ranks picks batch 4.
        @Test func aRankKilledMidSaveLeavesThePreviousCheckpointForAutoresume() throws {
            try withTemporaryFolder { folder in
                let killed = try MPILauncher.run(
                    ["sharded-saver-killed", "--folder", folder, "--timeout", "5", "--megabytes", "64"], processes: 4,
                    mpirunOptions: ["--enable-recovery"])
                let lines = killed.lines
                #expect(lines[2]?.contains { $0.contains("killing itself while writing") } == true, "\(killed.transcript)")
                for rank in [0, 1, 3] {
                    #expect(lines[rank]?.contains { $0.contains("the batch-8 save failed") && $0.contains("timed out") } == true,
                        "rank \(rank):\n\(killed.transcript)")
                }
                #expect(!killed.stdout.contains("FAILED"), "\(killed.transcript)")
                // Far below the 30-minute default a hang would take; generous, since 4 ranks writing
                // 64 MB each on a loaded 2-core machine took up to 115 s.
                #expect(killed.elapsed < .seconds(300), "\(killed.transcript)")
                #expect(FileManager.default.fileExists(atPath: folder + "/ba4-rank0.tar" + ShardManifest.suffix))
                #expect(!FileManager.default.fileExists(atPath: folder + "/ba8-rank0.tar" + ShardManifest.suffix))

                let resumed = try MPILauncher.run(["sharded-saver-resume", "--folder", folder, "--megabytes", "64"], processes: 4)
                #expect(resumed.status == 0, "\(resumed.transcript)")
                Self.expectEveryRank(resumed, of: 4, says: "resumed at batch 4")
            }
        }
    }
}
