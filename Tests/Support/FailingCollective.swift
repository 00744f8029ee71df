public import Checkpointing
import Synchronization

/// A rank's process group that fails at its `number`th collective (counting from 1): it runs
/// `failure` instead of taking part (which throws, or kills the process), so the other ranks
/// wait for it until they time out. How the tests make a rank die at a chosen point of a save.
public final class FailingCollective: ProcessGroup {
    private let inner: any ProcessGroup
    private let number: Int
    private let failure: @Sendable () throws(CheckpointError) -> Void
    private let calls = Mutex(0)

    public init(_ inner: any ProcessGroup, number: Int, failure: @escaping @Sendable () throws(CheckpointError) -> Void) {
        self.inner = inner
        self.number = number
        self.failure = failure
    }

    public var rank: Int { inner.rank }
    public var worldSize: Int { inner.worldSize }
    public var localRank: Int { inner.localRank }
    public var localWorldSize: Int { inner.localWorldSize }
    public var nodeRank: Int { inner.nodeRank }
    public var collectiveTimeout: Duration { inner.collectiveTimeout }

    private func arrive() throws(CheckpointError) {
        if calls.withLock({ $0 += 1; return $0 }) == number { try failure() }
    }

    public func barrier(timeout: Duration) throws(CheckpointError) {
        try arrive()
        try inner.barrier(timeout: timeout)
    }

    public func allGather(_ bytes: [UInt8], timeout: Duration) throws(CheckpointError) -> [[UInt8]] {
        try arrive()
        return try inner.allGather(bytes, timeout: timeout)
    }

    public func broadcast(_ bytes: [UInt8], from root: Int, timeout: Duration) throws(CheckpointError) -> [UInt8] {
        try arrive()
        return try inner.broadcast(bytes, from: root, timeout: timeout)
    }
}
