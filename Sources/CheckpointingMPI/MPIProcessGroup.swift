public import Checkpointing
internal import CMPI
import Logging
import Synchronization

/// The processes of an Open MPI run (`mpirun`, `srun` with PMIx) as a `ProcessGroup`.
///
/// Creating one initialises MPI unless the program already has (asking for
/// `MPI_THREAD_MULTIPLE`; `MPI_THREAD_SERIALIZED` is enough, because every MPI call of this
/// module takes one lock), and MPI is finalized at exit if this module initialised it. Every
/// process of the run must create its groups in the same order: creation is collective.
///
/// Each collective is a nonblocking MPI operation polled until it completes, so a rank that
/// never arrives (it crashed, was killed, or is stuck) makes the others throw
/// `CheckpointError/Code/distributed` after the timeout instead of hanging. The collective is
/// then still pending inside MPI and cannot be cancelled: the group is broken (later collectives
/// throw at once), and MPI is not finalized at exit, which would wait for it forever.
///
/// A group's collectives run one at a time, in the order they are called.
public final class MPIProcessGroup: ProcessGroup {
    /// This process's rank in `MPI_COMM_WORLD`.
    public let rank: Int
    /// The number of processes in `MPI_COMM_WORLD`.
    public let worldSize: Int
    /// This process's rank among the processes of its node (those that share memory with it).
    public let localRank: Int
    /// The number of processes on this node.
    public let localWorldSize: Int
    /// The index of this node, nodes numbered in the order of their lowest rank.
    public let nodeRank: Int
    /// The timeout given to ``init(timeout:maximumMessageBytes:)``, used by save and load.
    public let collectiveTimeout: Duration
    /// The most bytes one MPI operation moves; larger all-gathers and broadcasts take several.
    public let maximumMessageBytes: Int

    private let state: Mutex<GroupState>

    /// Joins the run's processes: initialises MPI if needed, then learns this process's rank,
    /// node and local rank from MPI.
    ///
    /// Every process of the run must call it (it is collective, and waits for them all).
    ///
    /// - Parameters:
    ///   - timeout: How long save and load wait in a collective (``collectiveTimeout``).
    ///   - maximumMessageBytes: The most bytes one MPI operation moves, from 1 to `Int32.max`
    ///     (MPI counts are C `int`s); 1 GiB by default.
    /// - Throws: `CheckpointError/Code/distributed` if MPI fails, was already finalized,
    ///   grants less than `MPI_THREAD_SERIALIZED`, or if the launcher environment
    ///   (`LaunchEnvironment/detect(from:)`) contradicts itself or names a rank or world size
    ///   other than MPI's, as stale `RANK` and `WORLD_SIZE` variables of another launch would;
    ///   `CheckpointError/Code/invalidArgument` for a negative timeout or a message size out
    ///   of range.
    public init(timeout: Duration = .seconds(1800), maximumMessageBytes: Int = 1 << 30) throws(CheckpointError) {
        guard timeout >= .zero else {
            throw CheckpointError(.invalidArgument, "the collective timeout \(timeout) is negative")
        }
        guard (1...Int(Int32.max)).contains(maximumMessageBytes) else {
            throw CheckpointError(
                .invalidArgument, "maximumMessageBytes \(maximumMessageBytes) is not between 1 and \(Int32.max)")
        }
        let launch = try LaunchEnvironment.detect()
        try MPIRuntime.start()
        try Self.verify(launch, against: try MPITopology.world())
        let topology = try MPITopology.discover()
        rank = topology.rank
        worldSize = topology.worldSize
        localRank = topology.localRank
        localWorldSize = topology.localWorldSize
        nodeRank = topology.nodeRank
        collectiveTimeout = timeout
        self.maximumMessageBytes = maximumMessageBytes
        state = Mutex(GroupState(communicator: topology.communicator))
        logger.debug(
            "MPI process group: rank \(rank) of \(worldSize), local rank \(localRank) of \(localWorldSize), node \(nodeRank)")
    }

    deinit {
        state.withLock { state in
            // An abandoned collective still uses the communicator.
            guard state.brokenBy == nil else { return }
            MPIRuntime.withLock { _ in
                var finalised: Int32 = 0
                guard MPI_Finalized(&finalised) == MPI_SUCCESS, finalised == 0 else { return }
                var communicator: MPI_Comm? = state.communicator
                MPI_Comm_free(&communicator)
            }
        }
    }

    /// A launcher environment that describes a run of several processes must describe MPI's.
    private static func verify(_ launch: LaunchEnvironment, against world: (rank: Int, size: Int)) throws(CheckpointError) {
        // No launcher variables and explicit `RANK=0 WORLD_SIZE=1` read alike: only a launcher
        // environment of several processes says something MPI can contradict.
        guard launch.worldSize > 1, launch.rank != world.rank || launch.worldSize != world.size else { return }
        throw CheckpointError(
            .distributed,
            "the launcher environment says rank \(launch.rank) of \(launch.worldSize) processes but MPI_COMM_WORLD "
                + "says rank \(world.rank) of \(world.size): the environment holds variables of another launch (stale "
                + "torchrun RANK and WORLD_SIZE, or SLURM variables of an allocation); unset them, or start every "
                + "process with one launcher")
    }

    /// Runs one collective call with this group's lock held for all of it.
    func collective<Result: Sendable>(
        _ name: String, timeout: Duration,
        _ body: (CollectiveCall, inout GroupState) throws(CheckpointError) -> Result
    ) throws(CheckpointError) -> Result {
        let call = CollectiveCall(name: name, timeout: timeout, rank: rank, worldSize: worldSize)
        return try state.withLock { state throws(CheckpointError) in
            if let brokenBy = state.brokenBy { throw call.failure(brokenBy) }
            return try body(call, &state)
        }
    }
}
