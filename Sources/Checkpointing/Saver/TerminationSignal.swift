#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Catches SIGTERM (what schedulers send before preempting a job) for the savers that ask for
/// it (``CheckpointSaver/Options/saveOnTermination``), so the next batch end saves instead of
/// the work since the last checkpoint being lost.
///
/// A library must not take over its process's signals, so the handler is installed only while
/// a saver that asked for it is active, and given back:
/// - it is installed with `sigaction` and remembers the disposition it replaced;
/// - each signal first sets a flag, then calls the handler that was there before, if that was
///   a function (so a program's own SIGTERM handling keeps working). A previous default
///   disposition is not applied at once: that would end the process before the save, which is
///   the point of the option;
/// - savers register and release (reference counted); when the last one releases, the previous
///   disposition is restored, unless something else has replaced the handler since, which is
///   then left alone. A SIGTERM that arrived and that no saver acted on is then raised again
///   when the previous disposition was the default one, so the process ends as it would have
///   without the saver; it is never swallowed.
enum TerminationSignal {
    /// Set by the handler, read and cleared by savers.
    private static let received = Atomic<Bool>(false)
    /// The disposition the handler replaced; the handler reads it to chain. Written only while
    /// no handler of ours is installed.
    nonisolated(unsafe) private static let previous: UnsafeMutablePointer<sigaction> = {
        let pointer = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
        pointer.initialize(to: sigaction())
        return pointer
    }()
    /// The savers registered.
    private static let registrations = Mutex(0)

    /// The handler: only async-signal-safe work (an atomic store, a call through a pointer).
    private static let handler: @convention(c) (Int32, UnsafeMutablePointer<siginfo_t>?, UnsafeMutableRawPointer?) -> Void = {
        signal, info, context in
        let savedErrno = errno
        TerminationSignal.received.store(true, ordering: .releasing)
        let before = TerminationSignal.previous.pointee
        if isFunction(before) {
            if before.sa_flags & SA_SIGINFO != 0 {
                before.__sigaction_handler.sa_sigaction?(signal, info, context)
            } else {
                before.__sigaction_handler.sa_handler?(signal)
            }
        }
        errno = savedErrno
    }

    /// A saver's claim on the handler; releasing it (or dropping it) gives the handler back once
    /// no other claim remains.
    final class Registration: Sendable {
        private let active = Atomic<Bool>(true)

        fileprivate init() {}

        /// Releases the claim; later calls do nothing.
        func release() {
            if active.exchange(false, ordering: .acquiringAndReleasing) { TerminationSignal.unregister() }
        }

        deinit { release() }
    }

    /// Registers a saver, installing the handler if it is the first.
    ///
    /// - Throws: `.io` when the system refuses the handler.
    static func register() throws(CheckpointError) -> Registration {
        try registrations.withLock { (count) throws(CheckpointError) in
            if count == 0 {
                // Touched now, so the handler never runs a global's lazy initialiser.
                _ = received.load(ordering: .relaxed)
                _ = previous
                var action = sigaction()
                action.__sigaction_handler.sa_sigaction = handler
                action.sa_flags = SA_SIGINFO | SA_RESTART
                sigemptyset(&action.sa_mask)
                guard sigaction(SIGTERM, &action, previous) == 0 else {
                    throw SystemCalls.error("installing the SIGTERM handler", path: "SIGTERM", errno: errno)
                }
            }
            count += 1
        }
        return Registration()
    }

    private static func unregister() {
        registrations.withLock { count in
            count -= 1
            guard count == 0 else { return }
            var current = sigaction()
            guard sigaction(SIGTERM, nil, &current) == 0, isOurs(current) else { return }
            sigaction(SIGTERM, previous, nil)
            if handlerAddress(previous.pointee) == 0 && received.exchange(false, ordering: .acquiringAndReleasing) {
                // To the process, not this thread, which may block SIGTERM (a Dispatch worker's does).
                kill(getpid(), SIGTERM)
            }
        }
    }

    /// Whether SIGTERM arrived since the last ``consume()``.
    static var isPending: Bool { received.load(ordering: .acquiring) }

    /// Clears the pending signal (after a saver has acted on it).
    static func consume() { received.store(false, ordering: .releasing) }

    /// Whether `action` is this handler.
    static func isOurs(_ action: sigaction) -> Bool {
        action.sa_flags & SA_SIGINFO != 0 && handlerAddress(action) == UInt(bitPattern: unsafeBitCast(handler, to: UnsafeRawPointer.self))
    }

    /// Whether `action` is a function to call, rather than `SIG_DFL` (address 0) or `SIG_IGN` (1).
    private static func isFunction(_ action: sigaction) -> Bool { handlerAddress(action) > 1 }

    /// The address in the handler union (both members share it).
    private static func handlerAddress(_ action: sigaction) -> UInt {
        guard let function = action.__sigaction_handler.sa_handler else { return 0 }
        return UInt(bitPattern: unsafeBitCast(function, to: UnsafeRawPointer.self))
    }
}
