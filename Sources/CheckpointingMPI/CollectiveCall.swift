import Checkpointing
internal import CMPI

#if canImport(Glibc)
import Glibc
#endif

/// What an ``MPIProcessGroup`` keeps behind its lock.
struct GroupState {
    /// The group's own duplicate of `MPI_COMM_WORLD`, with errors returned instead of fatal: the
    /// group's messages never match the program's own, and a failure becomes a thrown error.
    var communicator: MPI_Comm
    /// Why the group can no longer be used, once a collective has been abandoned.
    var brokenBy: String?
    /// The buffers of abandoned collectives: MPI may still read or write them.
    var abandonedBuffers: [MPIBuffer] = []
}

/// One call of a collective (a barrier, an all-gather, a broadcast): its nonblocking MPI
/// operations, each polled with `MPI_Test` until it completes or the call's deadline passes.
struct CollectiveCall {
    /// The collective's name in messages: `barrier`, `allGather`, `broadcast`.
    var name: String
    var timeout: Duration
    var rank: Int
    var worldSize: Int
    private var deadline: ContinuousClock.Instant

    /// The first and the longest pause between two polls: short enough that a small collective
    /// returns within microseconds of completing, long enough that a long wait costs no CPU.
    private static let firstPause = Duration.microseconds(50)
    private static let longestPause = Duration.milliseconds(2)

    init(name: String, timeout: Duration, rank: Int, worldSize: Int) {
        self.name = name
        self.timeout = timeout
        self.rank = rank
        self.worldSize = worldSize
        // A century stands for "no deadline" without overflowing the clock.
        deadline = .now + min(max(timeout, .zero), .seconds(3_155_760_000))
    }

    /// Starts one nonblocking operation with `start` and waits until it completes.
    ///
    /// `buffers` are those the operation reads or writes. If the deadline passes first, or MPI
    /// reports an error, the operation is abandoned: its buffers go to `state` for good, the
    /// group is marked broken, and MPI will not be finalised at exit.
    func perform(
        _ function: String, buffers: [MPIBuffer], state: inout GroupState,
        start: (MPI_Comm, UnsafeMutablePointer<MPI_Request?>) -> Int32
    ) throws(CheckpointError) {
        var request: MPI_Request? = nil
        let communicator = state.communicator
        do {
            try MPIRuntime.withLock { runtime throws(CheckpointError) in
                try check(start(communicator, &request), function)
                runtime.collectivesInFlight += 1
            }
        } catch {
            throw failure(error.message)
        }
        var pause = Self.firstPause
        while true {
            var done: Int32 = 0
            do {
                try MPIRuntime.withLock { runtime throws(CheckpointError) in
                    try check(MPI_Test(&request, &done, cmpi_status_ignore()), "MPI_Test of \(function)")
                    if done != 0 { runtime.collectivesInFlight -= 1 }
                }
            } catch {
                abandon(buffers, state: &state, reason: "\(name) failed in MPI")
                throw failure("\(error.message); this process group can no longer be used")
            }
            if done != 0 { return }
            let now = ContinuousClock.now
            guard now < deadline else {
                abandon(buffers, state: &state, reason: "a \(name) timed out after \(timeout) and is still pending")
                throw failure(
                    "timed out after \(timeout) waiting for the other processes: another rank probably died or is "
                        + "stuck (crashed, killed, hung, or on a code path that skips this \(name)); this process "
                        + "group can no longer be used, and MPI will not be finalized at exit")
            }
            sleep(for: min(pause, deadline - now))
            pause = min(pause * 2, Self.longestPause)
        }
    }

    /// An error that names the collective and this process's place in the group.
    func failure(_ message: String) -> CheckpointError {
        CheckpointError(.distributed, "MPI \(name) on rank \(rank) of \(worldSize): \(message)")
    }

    private func abandon(_ buffers: [MPIBuffer], state: inout GroupState, reason: String) {
        state.abandonedBuffers += buffers
        state.brokenBy = "this MPI process group can no longer be used: \(reason) (rank \(rank) of \(worldSize)); restart the run"
        MPIRuntime.withLock { $0.collectiveAbandoned = true }
    }

    private func sleep(for duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}
