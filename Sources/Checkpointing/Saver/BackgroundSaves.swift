import Dispatch
import Synchronization

/// Runs one save at a time on a dedicated queue, off the training loop (and off Swift's
/// cooperative pool: a save blocks on the disk).
///
/// At most one save is in flight: ``submit(_:)`` first waits for the previous one. A failure is
/// kept and thrown by the next ``submit(_:)`` or ``wait()``, so no error is lost.
final class BackgroundSaves: Sendable {
    private let queue = DispatchQueue(label: "swift-checkpointing.saves", qos: .utility)
    private let state = Mutex<(inFlight: DispatchGroup?, failure: CheckpointError?)>((nil, nil))

    /// Waits for the save in flight, then starts `work` in the background.
    func submit(_ work: @escaping @Sendable () throws(CheckpointError) -> Void) throws(CheckpointError) {
        try wait()
        let group = DispatchGroup()
        group.enter()
        state.withLock { $0.inFlight = group }
        queue.async { [self] in
            do throws(CheckpointError) {
                try work()
            } catch {
                self.state.withLock { $0.failure = error }
            }
            group.leave()
        }
    }

    /// Waits for the save in flight, if any, and throws its error, if it failed.
    func wait() throws(CheckpointError) {
        let group = state.withLock { $0.inFlight }
        group?.wait()
        let failure = state.withLock { state -> CheckpointError? in
            defer { state.failure = nil; state.inFlight = nil }
            return state.failure
        }
        if let failure { throw failure }
    }

    /// Whether a save is running.
    var isBusy: Bool {
        guard let group = state.withLock({ $0.inFlight }) else { return false }
        return group.wait(timeout: .now()) == .timedOut
    }
}
