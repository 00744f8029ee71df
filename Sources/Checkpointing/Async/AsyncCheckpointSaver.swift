// The `async` overloads of the saver's events: the synchronous ones run on
// ``BlockingWorkPool``'s threads, so that a training loop written with Swift concurrency
// does not hold a thread of the cooperative pool while a checkpoint is written or verified.
//
// Cancellation stops what runs on the pool's thread for the event: a save in the foreground
// before its commit, a resume's load. A save handed to the saver's own thread (an asynchronous
// save) is not the event's work: it runs to its end, and the next event, or
// `waitForPendingSave()`, reports its outcome.

/// The saver, handed to a pool thread for one event.
///
/// `@unchecked Sendable`: the saver is not thread-safe, but the caller's task is suspended
/// until the event's work returns, so one thread uses it at a time, as in a synchronous loop.
private struct SaverForOneEvent: @unchecked Sendable {
    let saver: CheckpointSaver
}

extension CheckpointSaver {
    /// Starts a new run as ``fitStart(_:)`` does, from Swift concurrency, on a thread of the
    /// library's own. A task cancelled before the call throws `.cancelled` and starts nothing.
    ///
    /// - Throws: ``CheckpointError``, as ``fitStart(_:)`` throws it.
    public func fitStart(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run("starting", path: options.folder) { () throws(CheckpointError) in try event.saver.fitStart(state) }
    }

    /// After each batch, as ``batchEnd(_:)``: saves when the interval says so, on a thread
    /// of the library's own.
    ///
    /// Cancelling the task stops a save made in the foreground before its commit, with code
    /// `.cancelled`: no temporary is left and the previous checkpoint is intact. A save made in
    /// the background (``Options/asynchronous``) is not stopped: it runs on the saver's thread
    /// to its end, and ``waitForPendingSave()-6z6f9`` or the next event reports its outcome.
    ///
    /// - Throws: ``CheckpointError``, as ``batchEnd(_:)`` throws it.
    public func batchEnd(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run("saving", path: options.folder) { () throws(CheckpointError) in try event.saver.batchEnd(state) }
    }

    /// After each epoch, as ``epochEnd(_:)``: saves when the interval says so, on a thread
    /// of the library's own.
    ///
    /// Cancelling the task stops a save made in the foreground before its commit, as
    /// ``batchEnd(_:)-8hhjh`` describes.
    ///
    /// - Throws: ``CheckpointError``, as ``epochEnd(_:)`` throws it.
    public func epochEnd(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run("saving", path: options.folder) { () throws(CheckpointError) in try event.saver.epochEnd(state) }
    }

    /// When training ends, as ``fitEnd(_:)``: saves the final checkpoint and waits for every
    /// save to finish, on a thread of the library's own (the caller's task is suspended while
    /// the background saves drain).
    ///
    /// Cancelling the task stops the final save before its commit, with code `.cancelled` (the
    /// previous checkpoint is then the newest); the wait for a background save is not cut
    /// short, since that save runs to its end on the saver's thread anyway.
    ///
    /// - Throws: ``CheckpointError``: the error of any save that failed.
    public func fitEnd(_ state: TrainingState) async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run("saving", path: options.folder) { () throws(CheckpointError) in try event.saver.fitEnd(state) }
    }

    /// Resumes from the newest checkpoint that verifies, as ``autoresume(into:)`` does, from
    /// Swift concurrency: the candidates are read and verified on a thread of the library's
    /// own. `state` changes only when a checkpoint was loaded: cancelling the task stops the
    /// load at its next tensor, with code `.cancelled`, and `state` is unchanged (a cancelled
    /// load is never taken for a damaged checkpoint and skipped).
    ///
    /// - Returns: The load's result, or `nil` when there was nothing to resume from.
    /// - Throws: ``CheckpointError``, as ``autoresume(into:)`` throws it.
    @discardableResult
    public func autoresume(into state: inout TrainingState) async throws(CheckpointError) -> LoadResult? {
        let event = SaverForOneEvent(saver: self)
        let before = state
        let (result, after) = try await BlockingWorkPool.shared.run("resuming", path: options.folder) { () throws(CheckpointError) in
            var state = before
            let result = try event.saver.autoresume(into: &state)
            return (result, state)
        }
        state = after
        return result
    }

    /// Waits for a save in flight, as ``waitForPendingSave()-6z6f9`` does, from Swift concurrency:
    /// the caller's task is suspended, holding no thread of the cooperative pool, while the
    /// background save finishes.
    ///
    /// The save is not stopped when the task is cancelled (it runs on the saver's thread);
    /// the wait is, with code `.cancelled`, only when the task was cancelled before the call.
    ///
    /// - Throws: ``CheckpointError``: the error of the save, if it failed.
    public func waitForPendingSave() async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run("waiting for a save", path: options.folder) { () throws(CheckpointError) in
            try event.saver.waitForPendingSave()
        }
    }

    /// Ends the saver without a final save, as ``close()-9bxd1`` does, from Swift concurrency: waits
    /// for a save in flight on a thread of the library's own and gives SIGTERM back.
    ///
    /// A task cancelled before the call throws `.cancelled` and the saver stays open (call
    /// ``close()-9bxd1`` again, or release it); once started, closing is not interrupted.
    ///
    /// - Throws: ``CheckpointError``: the error of the save in flight, if it failed.
    public func close() async throws(CheckpointError) {
        let event = SaverForOneEvent(saver: self)
        try await BlockingWorkPool.shared.run("closing the saver", path: options.folder) { () throws(CheckpointError) in
            try event.saver.close()
        }
    }
}
