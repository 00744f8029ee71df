import Testing

@testable import Checkpointing

/// Rank and sizes from torchrun, Open MPI, SLURM and PMI; contradictions refused.
@Suite struct LaunchEnvironmentTests {
    @Test func noLauncherIsASingleProcess() throws {
        #expect(try LaunchEnvironment.detect(from: ["HOME": "/root"]) == LaunchEnvironment())
    }

    @Test(arguments: [
        (["RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"],
         LaunchEnvironment(rank: 3, worldSize: 8, localRank: 1, localWorldSize: 2, nodeRank: 1)),
        (["OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
          "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_COMM_WORLD_NODE_RANK": "1"],
         // OMPI_COMM_WORLD_NODE_RANK is the process's index on its node, not a node index: ignored.
         LaunchEnvironment(rank: 2, worldSize: 4, localRank: 0, localWorldSize: 2, nodeRank: 0)),
        (["SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2", "SLURM_NODEID": "1"],
         LaunchEnvironment(rank: 5, worldSize: 6, localRank: 2, localWorldSize: 3, nodeRank: 1)),
        (["PMI_RANK": "1", "PMI_SIZE": "2"], LaunchEnvironment(rank: 1, worldSize: 2)),
        // Two launchers that agree are fine (srun with PMI).
        (["SLURM_PROCID": "1", "SLURM_NTASKS": "2", "PMI_RANK": "1", "PMI_SIZE": "2"], LaunchEnvironment(rank: 1, worldSize: 2)),
    ])
    func eachLauncherIsRead(environment: [String: String], expected: LaunchEnvironment) throws {
        #expect(try LaunchEnvironment.detect(from: environment) == expected)
    }

    @Test(arguments: [
        (["RANK": "1", "WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"], "RANK=1 but OMPI_COMM_WORLD_RANK=0"),
        (["RANK": "0", "WORLD_SIZE": "4", "SLURM_NTASKS": "8"], "WORLD_SIZE=4 but SLURM_NTASKS=8"),
        (["GROUP_RANK": "0", "NODE_RANK": "1", "WORLD_SIZE": "2"], "GROUP_RANK=0 but NODE_RANK=1"),
        (["RANK": "4", "WORLD_SIZE": "4"], "rank 4 is not below the world size 4"),
        (["RANK": "-1", "WORLD_SIZE": "4"], "RANK=-1"),
        (["PMI_RANK": "one"], "PMI_RANK=one"),
        (["LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"], "local rank 2 is not below the local world size 2"),
    ])
    func contradictionsAreRefused(environment: [String: String], mention: String) throws {
        let error = #expect(throws: CheckpointError.self) { try LaunchEnvironment.detect(from: environment) }
        #expect(error?.code == .distributed)
        #expect(error?.message.contains(mention) == true, "\(error?.message ?? "")")
    }

    @Test func theDefaultGroupIsRefusedWhenTheLauncherStartedSeveralProcesses() throws {
        #expect(throws: Never.self) { try refuseLoneProcessInMultiProcessRun(SingleProcessGroup(), environment: [:]) }
        do {
            try refuseLoneProcessInMultiProcessRun(SingleProcessGroup(), environment: ["RANK": "1", "WORLD_SIZE": "4"])
            Issue.record("rank 1 of 4 with the default group must be refused")
        } catch {
            #expect(error.code == .distributed && error.message.contains("rank 1 of 4") && error.message.contains("MPIProcessGroup"))
        }
    }
}
