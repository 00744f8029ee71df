#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Catches SIGTERM (what schedulers send before preempting a job) so the saver can save at the
/// next batch end instead of losing the work since the last checkpoint.
///
/// Once installed, SIGTERM no longer kills the process by itself: the saver saves and throws a
/// ``CheckpointError`` with code `.terminated`, and the training loop is expected to stop.
enum TerminationSignal {
    private static let received = Atomic<Bool>(false)
    private static let source = Mutex<(any DispatchSourceSignal)?>(nil)

    /// Starts catching SIGTERM; calling it again does nothing.
    static func install() {
        source.withLock { source in
            guard source == nil else { return }
            signal(SIGTERM, SIG_IGN)
            let watcher = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
            watcher.setEventHandler { received.store(true, ordering: .releasing) }
            watcher.resume()
            source = watcher
        }
    }

    /// Whether SIGTERM arrived since the last ``consume()``.
    static var isPending: Bool { received.load(ordering: .acquiring) }

    /// Clears the pending signal (after the saver has acted on it).
    static func consume() { received.store(false, ordering: .releasing) }
}
