import Synchronization

/// Hands out the indexes `0..<count` to worker threads, one at a time, and none after the
/// first failure, which it keeps: the parallel parts of an upload or download, the pieces of a
/// ranged read.
package final class WorkQueue: Sendable {
    private let state: Mutex<(next: Int, failure: CheckpointError?)>
    private let count: Int

    package init(count: Int) {
        self.count = count
        state = Mutex((0, nil))
    }

    /// The next index to work on, or `nil` when all are handed out or one has failed.
    package func next() -> Int? {
        state.withLock { state in
            guard state.failure == nil, state.next < count else { return nil }
            defer { state.next += 1 }
            return state.next
        }
    }

    /// Records `error` unless an earlier one is recorded, and stops handing out indexes.
    package func fail(_ error: CheckpointError) {
        state.withLock { if $0.failure == nil { $0.failure = error } }
    }

    /// The first failure, if any.
    package var failure: CheckpointError? { state.withLock { $0.failure } }
}
