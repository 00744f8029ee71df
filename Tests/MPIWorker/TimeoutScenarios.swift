import Checkpointing
import CheckpointingMPI
import Foundation

/// `timeout`: rank 1 never calls the barrier (it sleeps well past the timeout, then exits);
/// every other rank must throw the timeout error after `--timeout` seconds and exit 3.
func runTimeout(_ worker: Worker) throws -> Outcome {
    let group = try startedGroup(worker)
    if group.rank == 1 {
        worker.report("skipping the barrier")
        Thread.sleep(forTimeInterval: Double(worker.timeout.components.seconds) * 2 + 5)
        worker.report("exiting without the barrier")
        // Without MPI_Finalize: the other ranks will never finalize with this one.
        _exit(0)
    }
    return try expectTimeout(group, worker)
}

/// `killed-rank`: rank 2 kills itself with SIGKILL before a barrier; every other rank must
/// throw the timeout error after `--timeout` seconds and exit 3.
func runKilledRank(_ worker: Worker) throws -> Outcome {
    let group = try startedGroup(worker)
    try worker.expect(group.worldSize > 2, "killed-rank needs at least 3 ranks")
    if group.rank == 2 {
        worker.report("killing itself")
        kill(getpid(), SIGKILL)
    }
    return try expectTimeout(group, worker)
}

/// A group with the scenario's timeout, once every rank is up.
private func startedGroup(_ worker: Worker) throws -> MPIProcessGroup {
    let group = try MPIProcessGroup(timeout: worker.timeout)
    try worker.expect(group.collectiveTimeout == worker.timeout, "collectiveTimeout \(group.collectiveTimeout)")
    try group.barrier(timeout: .seconds(120))
    return group
}

/// Calls a barrier that some rank never reaches: it must throw a `.distributed` error that
/// names the barrier and the timeout, after the timeout; the group must then refuse at once.
private func expectTimeout(_ group: MPIProcessGroup, _ worker: Worker) throws -> Outcome {
    let clock = ContinuousClock()
    let start = clock.now
    let error: CheckpointError
    do {
        try group.barrier(timeout: worker.timeout)
        throw WorkerFailure("the barrier returned although a rank never called it")
    } catch let thrown as CheckpointError {
        error = thrown
    }
    let elapsed = start.duration(to: clock.now)
    try worker.expect(error.code == .distributed, "the barrier threw \(error.code): \(error)")
    try worker.expect(
        error.message.contains("barrier") && error.message.contains("timed out after \(worker.timeout)"),
        "the timeout error names neither the barrier nor the timeout: \(error)")
    try worker.expect(elapsed >= worker.timeout, "the barrier gave up after \(elapsed), before its timeout")

    let retry = clock.now
    do {
        _ = try group.allGather([1], timeout: .seconds(120))
        throw WorkerFailure("an allGather ran on a group broken by a timeout")
    } catch let refusal as CheckpointError {
        try worker.expect(
            refusal.message.contains("can no longer be used") && retry.duration(to: clock.now) < .seconds(1),
            "a broken group did not refuse at once: \(refusal)")
    }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    worker.report(String(format: "timed out after %.3f s: %@", seconds, "\(error)"))
    return .timedOut
}
