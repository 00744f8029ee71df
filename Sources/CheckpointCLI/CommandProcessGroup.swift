import Checkpointing
import CheckpointingMPI

/// The process group of a command: Open MPI's when the launcher started several processes
/// (`mpirun -np N ckpt ...`), else this process alone.
func commandProcessGroup(timeout seconds: Double) throws -> any ProcessGroup {
    guard try LaunchEnvironment.detect().worldSize > 1 else { return SingleProcessGroup() }
    return try MPIProcessGroup(timeout: .milliseconds(Int((seconds * 1000).rounded())))
}
