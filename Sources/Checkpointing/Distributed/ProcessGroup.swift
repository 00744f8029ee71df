/// The processes of a run and the collectives that coordinate them.
///
/// ``saveCheckpoint(_:filename:format:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)-80tki`` and
/// ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y`` take
/// one; the default, ``SingleProcessGroup``, is a run of one process. A multi-process
/// implementation (Open MPI) lives in its own module.
public protocol ProcessGroup: Sendable {
    /// This process's global rank, `0..<worldSize`.
    var rank: Int { get }
    /// The number of processes.
    var worldSize: Int { get }
    /// This process's rank on its node.
    var localRank: Int { get }
    /// The number of processes on this node.
    var localWorldSize: Int { get }
    /// The index of this process's node.
    var nodeRank: Int { get }
    /// How long save and load wait in a collective for the other processes before giving up
    /// (30 minutes unless the implementation says otherwise).
    var collectiveTimeout: Duration { get }

    /// Returns when every process has called it, or throws after `timeout`.
    func barrier(timeout: Duration) throws(CheckpointError)
    /// Every process's `bytes`, indexed by rank, on every process.
    func allGather(_ bytes: [UInt8], timeout: Duration) throws(CheckpointError) -> [[UInt8]]
    /// `root`'s `bytes` on every process (other processes' `bytes` are ignored).
    func broadcast(_ bytes: [UInt8], from root: Int, timeout: Duration) throws(CheckpointError) -> [UInt8]
}

/// A run of one process: every collective returns at once.
public struct SingleProcessGroup: ProcessGroup {
    public init() {}
    public var rank: Int { 0 }
    public var worldSize: Int { 1 }
    public var localRank: Int { 0 }
    public var localWorldSize: Int { 1 }
    public var nodeRank: Int { 0 }
    public func barrier(timeout: Duration) {}
    public func allGather(_ bytes: [UInt8], timeout: Duration) -> [[UInt8]] { [bytes] }
    public func broadcast(_ bytes: [UInt8], from root: Int, timeout: Duration) -> [UInt8] { bytes }
}

extension ProcessGroup {
    /// 30 minutes: long enough for a slow rank to write a large shard to a slow disk.
    public var collectiveTimeout: Duration { .seconds(1800) }
}
