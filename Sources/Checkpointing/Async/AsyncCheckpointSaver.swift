// The `async` overloads of the saver's events: the synchronous ones run on
// ``BlockingWorkPool``'s threads, so that a training loop written with Swift concurrency
// does not hold a thread of the cooperative pool while a checkpoint is written or verified.

/// The saver, handed to a pool thread for one event.
///
/// `@unchecked Sendable`: the saver is not thread-safe, but the caller's task is suspended
/// until the event's work returns, so one thread uses it at a time, as in a synchronous loop.
private struct SaverForOneEvent: @unchecked Sendable {
    let saver: CheckpointSaver
}

extension CheckpointSaver {
    /// Starts a new run as ``fitStart(_:)`` does, from Swift concurrency, on a thread of the
    /// library's own.
    ///
    /// - Throws: ``CheckpointError``, as ``fitStart(_:)`` throws it.
    public func fitStart(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try event.saver.fitStart(state) }
    }

    /// After each batch, as ``batchEnd(_:)``: saves when the interval says so, on a thread
    /// of the library's own.
    ///
    /// A save that has started is not interrupted when the task is cancelled: it runs to its
    /// atomic commit.
    ///
    /// - Throws: ``CheckpointError``, as ``batchEnd(_:)`` throws it.
    public func batchEnd(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try event.saver.batchEnd(state) }
    }

    /// After each epoch, as ``epochEnd(_:)``: saves when the interval says so, on a thread
    /// of the library's own.
    ///
    /// A save that has started is not interrupted when the task is cancelled.
    ///
    /// - Throws: ``CheckpointError``, as ``epochEnd(_:)`` throws it.
    public func epochEnd(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try event.saver.epochEnd(state) }
    }

    /// When training ends, as ``fitEnd(_:)``: saves the final checkpoint and waits for every
    /// save to finish, on a thread of the library's own (the caller's task is suspended while
    /// the background saves drain).
    ///
    /// Not interrupted when the task is cancelled: the last checkpoint is the one a resume needs.
    ///
    /// - Throws: ``CheckpointError``: the error of any save that failed.
    public func fitEnd(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try event.saver.fitEnd(state) }
    }

    /// Resumes from the newest checkpoint that verifies, as ``autoresume(into:)`` does, from
    /// Swift concurrency: the candidates are read and verified on a thread of the library's
    /// own. `state` changes only when a checkpoint was loaded.
    ///
    /// - Returns: The load's result, or `nil` when there was nothing to resume from.
    /// - Throws: ``CheckpointError``, as ``autoresume(into:)`` throws it.
    @discardableResult
    public func autoresume(into state: inout TrainingState) async throws(CheckpointError) -> LoadResult? {
        let event = SaverForOneEvent(saver: self)
        let before = state
        let (result, after) = try await BlockingWorkPool.shared.run { () throws(CheckpointError) in
            var state = before
            let result = try event.saver.autoresume(into: &state)
            return (result, state)
        }
        state = after
        return result
    }
}
