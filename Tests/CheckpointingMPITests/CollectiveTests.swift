import Foundation
import Testing

extension MPIProcessGroupTests {
    /// Barrier, all-gather and broadcast between healthy ranks.
    @Suite struct CollectiveTests {
        @Test(arguments: [1, 2, 4])
        func collectivesGiveEveryRankTheRightBytes(processes: Int) throws {
            let run = try MPILauncher.run(["collectives"], processes: processes)
            #expect(run.status == 0, "\(run.transcript)")
            let lines = run.lines
            for rank in 0..<processes {
                #expect(lines[rank]?.contains { $0.hasPrefix("collectives passed (rank \(rank) of \(processes)") } == true,
                        "rank \(rank) did not pass:\n\(run.transcript)")
            }
            #expect(!run.stdout.contains("FAILED"), "\(run.transcript)")
        }

        /// A `swift test` started inside another MPI job, a SLURM step or a torchrun worker
        /// inherits their variables; the tests' own `mpirun` must not see them.
        @Test func launcherVariablesOfTheTestRunDoNotLeakIntoTheRanks() throws {
            var environment = ProcessInfo.processInfo.environment
            environment.merge([
                "OMPI_COMM_WORLD_RANK": "7", "OMPI_COMM_WORLD_SIZE": "9", "OMPI_MCA_ess": "singleton",
                "PMIX_RANK": "7", "PMI_RANK": "7", "PMI_SIZE": "9", "SLURM_PROCID": "3", "SLURM_NTASKS": "9",
                "RANK": "5", "WORLD_SIZE": "9", "LOCAL_RANK": "2",
            ]) { $1 }
            let run = try MPILauncher.run(["collectives"], processes: 2, environment: environment)
            #expect(run.status == 0, "\(run.transcript)")
            #expect(run.lines.values.filter { $0.contains { $0.hasPrefix("collectives passed") } }.count == 2, "\(run.transcript)")
        }
    }
}
