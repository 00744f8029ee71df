import Checkpointing
internal import CMPI
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The module's logger: debug messages only, on initialisation.
let logger = Logger(label: "swift-checkpointing.mpi")

/// Open MPI's state in this process: initialised once, finalised at exit only when that is safe.
///
/// Every MPI call of this module runs inside ``withLock(_:)``: a save may run its collectives on
/// a background thread while another group is used elsewhere, and MPI may grant only
/// `MPI_THREAD_SERIALIZED` (one thread at a time).
enum MPIRuntime {
    struct State {
        /// Whether this module called `MPI_Init_thread`, and so owes the `MPI_Finalize`.
        var initialisedHere = false
        /// Collectives started and not yet complete, in every group of the process.
        var collectivesInFlight = 0
        /// Whether a timeout left a collective pending: `MPI_Finalize` would wait for it forever.
        var collectiveAbandoned = false
    }

    private static let state = Mutex(State())

    /// Runs `body` holding the lock that serialises every MPI call of the process.
    static func withLock<Result, Failure: Error>(
        _ body: (inout State) throws(Failure) -> sending Result
    ) throws(Failure) -> sending Result {
        try state.withLock { state throws(Failure) in try body(&state) }
    }

    /// Initialises MPI unless it already is (by this module or by the program), and makes sure
    /// it may be called from any thread, one at a time.
    static func start() throws(CheckpointError) {
        try withLock { state throws(CheckpointError) in
            var initialised: Int32 = 0
            var finalised: Int32 = 0
            try check(MPI_Initialized(&initialised), "MPI_Initialized")
            try check(MPI_Finalized(&finalised), "MPI_Finalized")
            guard finalised == 0 else {
                throw CheckpointError(
                    .distributed, "MPI was already finalized in this process; create every MPIProcessGroup before MPI_Finalize")
            }
            var provided: Int32 = 0
            if initialised == 0 {
                try check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_MULTIPLE), &provided), "MPI_Init_thread")
                state.initialisedHere = true
                atexit(finalizeAtExit)
                logger.debug("initialised MPI, thread level \(provided)")
            } else {
                try check(MPI_Query_thread(&provided), "MPI_Query_thread")
            }
            guard provided >= Int32(MPI_THREAD_SERIALIZED) else {
                throw CheckpointError(
                    .distributed,
                    "MPI was initialised with thread level \(provided), below MPI_THREAD_SERIALIZED; saves may run "
                        + "collectives on a background thread, so initialise MPI with MPI_Init_thread and "
                        + "MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE (or let MPIProcessGroup initialise it)")
            }
        }
    }
}

/// Finalises MPI at exit when this module initialised it and no collective is pending.
///
/// `MPI_Finalize` completes pending operations first, so after a timeout (or while another
/// thread is still in a collective) it would hang the exit: it is skipped, and the launcher
/// reports a process that exited without finalising, which is what happened.
private func finalizeAtExit() {
    MPIRuntime.withLockIfAvailable { state in
        guard state.initialisedHere, state.collectivesInFlight == 0, !state.collectiveAbandoned else { return }
        var finalised: Int32 = 0
        guard MPI_Finalized(&finalised) == MPI_SUCCESS, finalised == 0 else { return }
        MPI_Finalize()
    }
}

extension MPIRuntime {
    /// Like ``withLock(_:)``, but does nothing when another thread holds the lock: at exit, a
    /// thread stuck in MPI must not hold the process up.
    fileprivate static func withLockIfAvailable(_ body: (inout State) -> Void) {
        _ = state.withLockIfAvailable { state in body(&state) }
    }
}
