import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension MPIProcessGroupTests {
    /// Errors cross ranks whole: a full disk on one rank of a sharded save is reported on every
    /// other rank as that rank's error, with its code, errno and path.
    @Suite struct RankErrorMPITests {
        @Test func aFullDiskOnOneRankIsReportedOnRankZeroWithItsErrnoAndPath() throws {
            try withTemporaryFolder { folder in
                let run = try MPILauncher.run(["sharded-save-fault", "--folder", folder, "--megabytes", "1"], processes: 3)
                #expect(run.status == 0, "\(run.transcript)")
                #expect(!run.stdout.contains("FAILED"), "\(run.transcript)")
                let lines = run.lines
                let failedShard = folder + "/ep1-ba4-rank2.tar"
                for rank in [0, 1] {
                    #expect(
                        lines[rank]?.contains("error code=io rank=2 errno=\(ENOSPC) path=\(failedShard)") == true,
                        "rank \(rank) must report rank 2's ENOSPC and path:\n\(run.transcript)")
                }
                #expect(
                    lines[2]?.contains("error code=io rank=own errno=\(ENOSPC) path=\(failedShard)") == true,
                    "rank 2 reports its own error:\n\(run.transcript)")
                #expect(
                    lines[0]?.contains { $0.hasPrefix("message: rank 2: \(failedShard): ") && $0.contains("the disk is full") } == true,
                    "\(run.transcript)")
                #expect(!FileManager.default.fileExists(atPath: folder + "/ep1-ba4-rank0.tar" + ShardManifest.suffix))
                let left = try FileManager.default.contentsOfDirectory(atPath: folder)
                #expect(left.isEmpty, "no manifest, no shard, no temporary: \(left)")
            }
        }
    }
}
