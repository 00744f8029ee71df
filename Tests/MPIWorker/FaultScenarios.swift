import Checkpointing
import CheckpointingMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `sharded-save-fault`: every rank saves its rows at batch 4, sharded, into `--folder`; the
/// last rank's disk is full (every write under the folder fails with `ENOSPC`, injected in that
/// process alone). Every rank must fail with that rank's error, whole, and print it as
/// `error code=... rank=... errno=... path=...`.
func runShardedSaveFault(_ worker: Worker) throws -> Outcome {
    let group = try MPIProcessGroup(timeout: .seconds(120))
    let failing = group.worldSize - 1
    let (part, sharding) = try scenarioPart(batch: 4, megabytes: worker.megabytes, rank: group.rank, worldSize: group.worldSize)
    let faults = group.rank == failing
        ? [Syscall.Kind.write, .pwrite].map { SyscallFaults.Fault($0, calls: { _ in true }, errno: ENOSPC) } : []
    let (result, _) = SyscallFaults.run(under: worker.folder, failing: faults) {
        try saveCheckpoint(part, filename: worker.folder + "/ep{epoch}-ba{batch}-rank{rank}", sharding: sharding, processGroup: group)
    }
    let error: CheckpointError
    switch result {
    case .success(let paths): throw WorkerFailure("the save succeeded although rank \(failing)'s disk is full: \(paths)")
    case .failure(let thrown as CheckpointError): error = thrown
    case .failure(let other): throw WorkerFailure("the save threw a \(type(of: other)), not a CheckpointError: \(other)")
    }
    let rank = error.rank.map(String.init) ?? "own"
    let errno = error.systemErrno.map(String.init) ?? "none"
    worker.report("error code=\(error.code) rank=\(rank) errno=\(errno) path=\(error.path ?? "none")")
    worker.report("message: \(error)")
    return .passed
}
