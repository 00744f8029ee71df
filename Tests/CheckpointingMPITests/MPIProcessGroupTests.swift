import Testing

/// The process group over Open MPI: `mpi-worker` scenarios run under `mpirun`, each rank checking what
/// it sees and printing a `rank R: ...` line. One `mpirun` at a time: four ranks already
/// oversubscribe the test machine's cores.
@Suite(.serialized) struct MPIProcessGroupTests {}

/// The seconds in a worker's `timed out after 3.004 s: ...` line.
func secondsBeforeTimeout(in line: String) -> Double? {
    guard line.hasPrefix("timed out after ") else { return nil }
    return Double(line.dropFirst("timed out after ".count).prefix { $0 != " " })
}
