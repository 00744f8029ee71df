// The `async` overloads of opening and verifying a PyTorch Distributed Checkpoint folder: the
// synchronous ones run on ``BlockingWorkPool``'s threads, and stop with `.cancelled` when the
// task is cancelled.

extension DistributedCheckpoint {
    /// Opens the DCP checkpoint at `path` as ``open(_:)`` does, from Swift concurrency: reading
    /// `.metadata` and checking the data files run on a thread of the library's own while the
    /// caller's task is suspended.
    ///
    /// - Throws: ``CheckpointError``, as ``open(_:)`` throws it; `.cancelled` when the task was
    ///   cancelled before the folder was read.
    public static func open(_ path: String) async throws(CheckpointError) -> DistributedCheckpoint {
        try await BlockingWorkPool.shared.run("opening", path: path) { () throws(CheckpointError) in try open(path) }
    }

    /// Checks every archive of the checkpoint as ``verify()`` does, from Swift concurrency, on a
    /// thread of the library's own. Cancelling the task stops the checks at the next entry,
    /// with code `.cancelled`.
    ///
    /// - Throws: ``CheckpointError`` naming the first damaged entry, its file and offset.
    public func verify() async throws(CheckpointError) {
        try await BlockingWorkPool.shared.run("verifying", path: folder) { () throws(CheckpointError) in try verify() }
    }
}
