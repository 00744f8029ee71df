import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

extension MPIProcessGroupTests {
    /// `mpirun -np N ckpt bench sharded`: every rank saves its rows into one folder that they
    /// agree on, rank 0 reports, and the folder is removed.
    @Suite struct BenchMPITests {
        @Test func shardedBenchRunsOnEveryRankAndRankZeroReports() throws {
            let run = try MPILauncher.run(
                ["bench", "sharded", "--scale", "0.002", "--repeat", "1", "--json"], processes: 2, program: try MPILauncher.ckpt())
            #expect(run.status == 0, "\(run.transcript)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.transcript)")
            #expect(report["world_size"] as? Int == 2)
            for key in ["raw_write_fsync_seconds", "save_seconds", "load_seconds"] {
                #expect((report[key] as? Double ?? -1) > 0, "\(key)")
            }
            #expect((report["file_bytes"] as? Int ?? 0) > (report["tensor_bytes"] as? Int ?? .max))
        }
    }
}
