import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

extension MPIProcessGroupTests {
    /// `ckpt convert --format dcp` across real processes: 3 ranks each write their rows of a
    /// DCP folder and rank 0 the `.metadata`; 2 ranks read it back, each only its rows.
    @Suite struct DCPMPITests {
        @Test func threeRanksWriteADCPFolderThatTwoRanksReadBack() throws {
            try withTemporaryFolder { folder in
                let original = Fixtures.path("composer/ep1-ba4-rank0.pt")
                let ckpt = try MPILauncher.ckpt()
                let split = try MPILauncher.run(
                    ["convert", "--sharded", "--format", "dcp", original, folder + "/dcp/ep{epoch}"], processes: 3, program: ckpt)
                #expect(split.status == 0, "\(split.transcript)")
                #expect(split.stdout == folder + "/dcp/ep1\n", "rank 0 prints the folder")
                #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/dcp/ep1").sorted()
                    == [".metadata", "__0_0.distcp", "__1_0.distcp", "__2_0.distcp"])
                let checkpoint = try DistributedCheckpoint.open(folder + "/dcp/ep1")
                // 16 rows split 3 ways, each rank writing its own.
                let weight = checkpoint.tensors.first { $0.path == "state/model/module.0.weight" }
                #expect(weight?.chunks.map(\.box.shape) == [[6, 8], [5, 8], [5, 8]])
                #expect(weight?.chunks.map(\.file) == ["__0_0.distcp", "__1_0.distcp", "__2_0.distcp"])

                // The same as one process writes it, read whole.
                try saveCheckpoint(tree: try loadCheckpointTree(original).tree, filename: folder + "/one", format: .distributedCheckpoint)
                #expect(try loadCheckpointTree(folder + "/dcp/ep1").tree == loadCheckpointTree(folder + "/one").tree)

                let join = try MPILauncher.run(["convert", folder + "/dcp/ep1", folder + "/whole.pt"], processes: 2, program: ckpt)
                #expect(join.status == 0, "\(join.transcript)")
                #expect(try loadCheckpointTree(folder + "/whole.pt").tree == loadCheckpointTree(folder + "/one").tree)
            }
        }
    }
}
