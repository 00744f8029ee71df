import Foundation
import Synchronization

/// The threads the `async` entry points run their blocking file work on, so that none of it
/// holds a thread of Swift concurrency's cooperative pool (which has one thread per core, and
/// stalls every task of the process while its threads wait on disk).
///
/// A small pool of our own threads: NIOPosix's `NIOThreadPool`, which NIOFS uses the same way,
/// is linked only to `CheckpointingS3`, and the core module stays free of SwiftNIO. Threads
/// start on first use and live as long as the process; work beyond their number waits its
/// turn in order of submission.
package final class BlockingWorkPool: Sendable {
    /// The pool the library's `async` overloads use: at least two threads (a save and a load
    /// of a small checkpoint proceed side by side), one per core on larger machines, since
    /// each piece of work spreads its checksums over every core itself.
    package static let shared = BlockingWorkPool(threadCount: max(2, ProcessInfo.processInfo.activeProcessorCount))

    private struct State {
        var queue: [@Sendable () -> Void] = []
        /// The pool's threads, which live as long as the process (so no identifier is reused).
        var threads: Set<ObjectIdentifier> = []
    }

    private let threadCount: Int
    private let name: String
    private let state = Mutex(State())
    /// One signal per piece of work queued: an idle thread takes it.
    private let pending = DispatchSemaphore(value: 0)

    /// A pool of up to `threadCount` threads, started as work arrives, named `name` and a number.
    package init(threadCount: Int, name: String = "Checkpointing blocking work") {
        self.threadCount = max(1, threadCount)
        self.name = name
    }

    /// Whether the caller runs on one of this pool's threads.
    package var ownsCurrentThread: Bool {
        let current = ObjectIdentifier(Thread.current)
        return state.withLock { $0.threads.contains(current) }
    }

    /// Runs `body` on one of the pool's threads and resumes the caller with its result; the
    /// caller's task is suspended meanwhile, holding no thread.
    ///
    /// Cancellation: a task cancelled before the call throws `.cancelled` without running
    /// `body`; one cancelled while `body` waits or runs sets the ``CancellationFlag`` bound as
    /// ``CancellationFlag/current`` around `body`, which `body` checks at its own boundaries
    /// (it is not stopped otherwise: it may finish and return its result). The reporter of
    /// ``CheckpointProgress/current`` in the caller's task is bound around `body` too.
    ///
    /// - Parameter what: What `body` does, as a gerund (`"saving"`), for a `.cancelled` error
    ///   thrown before `body` starts.
    /// - Parameter path: What `body` works on, for that error.
    package func run<Value: Sendable>(
        _ what: String = "working", path: String? = nil, _ body: @escaping @Sendable () throws(CheckpointError) -> Value
    ) async throws(CheckpointError) -> Value {
        let flag = CancellationFlag()
        let progress = CheckpointProgress.current
        let result: Result<Value, CheckpointError> = await withTaskCancellationHandler {
            if Task.isCancelled { return .failure(CancellationFlag.error(what, path: path)) }
            return await withUnsafeContinuation { continuation in
                submit {
                    let result = CancellationFlag.$current.withValue(flag) {
                        CheckpointProgress.$current.withValue(progress) {
                            Result { () throws(CheckpointError) -> Value in
                                // The task may have been cancelled while the work waited its turn.
                                if flag.isCancelled { throw CancellationFlag.error(what, path: path) }
                                return try body()
                            }
                        }
                    }
                    continuation.resume(returning: result)
                }
            }
        } onCancel: {
            flag.cancel()
        }
        return try result.get()
    }

    /// Queues `work` for the next idle thread.
    package func submit(_ work: @escaping @Sendable () -> Void) {
        let startThread = state.withLock { state -> Bool in
            state.queue.append(work)
            return state.threads.count < threadCount
        }
        if startThread { startOneThread() }
        pending.signal()
    }

    private func startOneThread() {
        let thread = Thread { [self] in
            while true {
                pending.wait()
                let work = state.withLock { $0.queue.isEmpty ? nil : $0.queue.removeFirst() }
                work?()
            }
        }
        let identifier = ObjectIdentifier(thread)
        let number = state.withLock { state -> Int? in
            guard state.threads.count < threadCount else { return nil }
            state.threads.insert(identifier)
            return state.threads.count
        }
        guard let number else { return }
        thread.name = "\(name) \(number)"
        thread.start()
    }
}
