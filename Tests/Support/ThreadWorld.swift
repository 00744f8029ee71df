public import Checkpointing
import Foundation

/// A run of several ranks inside one test process: one thread per rank, and a
/// ``ProcessGroup`` whose collectives meet in shared memory. Tests use it to exercise the
/// multi-rank logic of saves and loads quickly; the MPI tests run the same logic across
/// real processes.
public final class ThreadWorld: @unchecked Sendable {
    public let size: Int
    private let timeout: Duration
    private let condition = NSCondition()
    private var slots: [[UInt8]?]
    private var arrivals = 0
    private var generation = 0
    private var lastResult: [[UInt8]] = []

    public init(size: Int, timeout: Duration = .seconds(60)) {
        self.size = size
        self.timeout = timeout
        slots = Array(repeating: nil, count: size)
    }

    /// Runs `body` on every rank, each on its own thread, and returns every rank's outcome.
    public static func run<T: Sendable>(
        size: Int, timeout: Duration = .seconds(60), _ body: @escaping @Sendable (Group) throws -> T
    ) -> [Result<T, any Error>] {
        let world = ThreadWorld(size: size, timeout: timeout)
        let results = ResultBox<T>(count: size)
        let threads = (0..<size).map { rank in
            Thread {
                let outcome = Result { try body(Group(world: world, rank: rank)) }
                results.set(rank, outcome)
            }
        }
        for thread in threads {
            thread.stackSize = 8 << 20
            thread.start()
        }
        return results.wait()
    }

    /// One rank's view of the world.
    public struct Group: ProcessGroup {
        let world: ThreadWorld
        public let rank: Int
        public var worldSize: Int { world.size }
        public var localRank: Int { rank }
        public var localWorldSize: Int { world.size }
        public var nodeRank: Int { 0 }
        public var collectiveTimeout: Duration { world.timeout }

        public func barrier(timeout: Duration) throws(CheckpointError) {
            _ = try world.gather([], rank: rank, timeout: timeout, name: "barrier")
        }

        public func allGather(_ bytes: [UInt8], timeout: Duration) throws(CheckpointError) -> [[UInt8]] {
            try world.gather(bytes, rank: rank, timeout: timeout, name: "all-gather")
        }

        public func broadcast(_ bytes: [UInt8], from root: Int, timeout: Duration) throws(CheckpointError) -> [UInt8] {
            try world.gather(bytes, rank: rank, timeout: timeout, name: "broadcast")[root]
        }
    }

    private func gather(_ bytes: [UInt8], rank: Int, timeout: Duration, name: String) throws(CheckpointError) -> [[UInt8]] {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        slots[rank] = bytes
        arrivals += 1
        if arrivals == size {
            lastResult = slots.map { $0! }
            slots = Array(repeating: nil, count: size)
            arrivals = 0
            generation += 1
            condition.broadcast()
            return lastResult
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        let deadline = Date(timeIntervalSinceNow: seconds)
        while generation == mine {
            if !condition.wait(until: deadline) && generation == mine {
                throw CheckpointError(.distributed, "\(name) timed out after \(timeout) waiting for the other ranks")
            }
        }
        return lastResult
    }

    private final class ResultBox<T: Sendable>: @unchecked Sendable {
        private let condition = NSCondition()
        private var results: [Result<T, any Error>?]
        init(count: Int) { results = Array(repeating: nil, count: count) }
        func set(_ rank: Int, _ result: Result<T, any Error>) {
            condition.lock()
            results[rank] = result
            condition.broadcast()
            condition.unlock()
        }
        func wait() -> [Result<T, any Error>] {
            condition.lock()
            defer { condition.unlock() }
            while results.contains(where: { $0 == nil }) { condition.wait() }
            return results.map { $0! }
        }
    }
}
