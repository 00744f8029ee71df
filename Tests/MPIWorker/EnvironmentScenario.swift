import Checkpointing
import CheckpointingMPI
import Foundation

/// `env-contradiction`: creating a group in a launcher environment that contradicts MPI must
/// throw a `.distributed` error that says so; every rank then exits 4.
///
/// Variants: `stale-torchrun` leaves torchrun's `RANK` and `WORLD_SIZE` of another launch
/// beside mpirun's variables (the environment contradicts itself); `foreign-launcher` hides
/// mpirun's variables and claims a larger world (the environment contradicts MPI).
func runEnvironmentContradiction(_ worker: Worker) throws -> Outcome {
    let expected: String
    switch worker.variant {
    case "stale-torchrun":
        setenv("RANK", "\((worker.launchRank + 1) % worker.launchSize)", 1)
        setenv("WORLD_SIZE", "\(worker.launchSize)", 1)
        expected = "contradicts itself"
    case "foreign-launcher":
        for name in ["RANK", "SIZE", "LOCAL_RANK", "LOCAL_SIZE", "NODE_RANK"] { unsetenv("OMPI_COMM_WORLD_" + name) }
        setenv("RANK", "\(worker.launchRank)", 1)
        setenv("WORLD_SIZE", "\(worker.launchSize + 1)", 1)
        expected = "MPI_COMM_WORLD says rank \(worker.launchRank) of \(worker.launchSize)"
    default:
        throw WorkerFailure("env-contradiction needs --variant stale-torchrun or foreign-launcher")
    }
    do {
        _ = try MPIProcessGroup()
        throw WorkerFailure("a group was created in a contradicting environment")
    } catch let error as CheckpointError {
        try worker.expect(
            error.code == .distributed && error.message.contains(expected),
            "expected a .distributed error saying \"\(expected)\", got \(error.code): \(error)")
        worker.report("refused: \(error)")
        return .refused
    }
}
