import Synchronization

/// Whether the Swift task that started an operation was cancelled: the link between Swift
/// concurrency's cancellation and the synchronous work that ``BlockingWorkPool`` runs for the
/// `async` overloads.
///
/// ``BlockingWorkPool/run(_:path:_:)`` makes one per call, sets it when the caller's task is cancelled,
/// and binds it as ``current`` around the work on the pool's thread. The work checks it at its
/// natural boundaries (each write of a save, before the commit's rename and never after it;
/// each tensor a load reads or verifies; each shard; each piece of a ranged read) and stops
/// with ``CheckpointError/Code/cancelled``, leaving what a failed save or load leaves: no
/// temporary, the previous checkpoint intact, the caller's state unchanged. Code that starts
/// threads of its own captures ``current`` first (a task-local value is not inherited by a
/// `Thread`), and code that waits on something it can abort registers ``onCancel(_:)``.
///
/// The synchronous API never runs with a flag bound, so it is never cancelled.
package final class CancellationFlag: Sendable {
    /// A handler registered with ``onCancel(_:)``; removing it keeps it from running.
    package struct Registration: Sendable {
        fileprivate let flag: CancellationFlag?
        fileprivate let id: Int

        /// Removes the handler, if it has not run yet.
        package func remove() {
            flag?.handlers.withLock { handlers in _ = handlers?.removeValue(forKey: id) }
        }
    }

    private let cancelled = Atomic<Bool>(false)
    /// The handlers to run on cancellation, by registration; `nil` once they ran.
    private let handlers = Mutex<[Int: @Sendable () -> Void]?>([:])
    private let nextID = Atomic<Int>(0)

    package init() {}

    /// The flag of the `async` call whose work runs on this thread, if any.
    @TaskLocal package static var current: CancellationFlag?

    /// Whether the task was cancelled.
    package var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    /// Marks the operation cancelled and runs every registered handler, once, on the calling
    /// thread (the thread that cancelled the task).
    package func cancel() {
        cancelled.store(true, ordering: .releasing)
        let pending = handlers.withLock { handlers -> [@Sendable () -> Void] in
            defer { handlers = nil }
            return handlers.map { Array($0.values) } ?? []
        }
        for handler in pending { handler() }
    }

    /// Runs `handler` when the operation is cancelled (at once, on this thread, when it is
    /// already): for work blocked on something it can abort, such as a request in flight.
    ///
    /// The handler may run on any thread, concurrently with the work: it must only signal the
    /// work to stop (close a connection, fail a wait), never clean up after it.
    @discardableResult
    package func onCancel(_ handler: @escaping @Sendable () -> Void) -> Registration {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let registered = handlers.withLock { handlers -> Bool in
            guard handlers != nil else { return false }
            handlers?[id] = handler
            return true
        }
        guard registered else {
            handler()
            return Registration(flag: nil, id: id)
        }
        return Registration(flag: self, id: id)
    }

    /// Throws ``CheckpointError/Code/cancelled`` when the task was cancelled.
    ///
    /// - Parameters:
    ///   - what: The operation that stops, as a gerund for the message: `"saving"`, `"verifying"`.
    ///   - path: The checkpoint it works on.
    package func check(_ what: String, path: String) throws(CheckpointError) {
        guard isCancelled else { return }
        throw Self.error(what, path: path)
    }

    /// Runs `body` with no cancellation in effect: for the work that follows a commit (the
    /// saver's records of a checkpoint it committed), which a cancelled task must not cut
    /// short, since a committed save is never reported as cancelled.
    package static func ignoring<Result>(_ body: () throws(CheckpointError) -> Result) throws(CheckpointError) -> Result {
        guard current != nil else { return try body() }
        return try rethrowingCheckpointError { try $current.withValue(nil) { try body() } }
    }

    /// The error of an operation stopped by its task's cancellation.
    package static func error(_ what: String, path: String?) -> CheckpointError {
        CheckpointError(
            .cancelled,
            "stopped while \(what): the Swift task running it was cancelled; nothing was committed (a checkpoint already under this name is untouched) and nothing was loaded; call it again when the work is wanted",
            path: path)
    }
}

/// A sink that checks a ``CancellationFlag`` before each write, in front of a compressor: the
/// file behind it checks its own writes, but a compressor may hold megabytes before it writes
/// any, so a compressed save would otherwise stop only at its commit.
final class CancellationCheckingSink: ByteSink {
    private let next: any ByteSink
    private let cancellation: CancellationFlag
    private let path: String

    init(next: any ByteSink, cancellation: CancellationFlag, path: String) {
        self.next = next
        self.cancellation = cancellation
        self.path = path
    }

    var position: Int { next.position }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        try cancellation.check("saving", path: path)
        try next.write(bytes)
    }
}
