// The `async` overloads of opening and verifying a checkpoint file: the synchronous ones run
// on ``BlockingWorkPool``'s threads, and stop with `.cancelled` when the task is cancelled.

extension CheckpointFile {
    /// Opens the checkpoint at `path` as ``open(_:)`` does, from Swift concurrency: the
    /// mapping, and the decompression of a compressed file, run on a thread of the library's
    /// own while the caller's task is suspended. Cancelling the task stops a decompression at
    /// its next piece, with code `.cancelled`.
    ///
    /// - Throws: ``CheckpointError``, as ``open(_:)`` throws it.
    public static func open(_ path: String) async throws(CheckpointError) -> CheckpointFile {
        try await open(path, limits: ReadingLimits())
    }

    /// Opens the checkpoint at `path` within `limits` as ``open(_:limits:)`` does, from Swift
    /// concurrency, on a thread of the library's own.
    ///
    /// - Throws: ``CheckpointError``, as ``open(_:limits:)`` throws it.
    public static func open(_ path: String, limits: ReadingLimits) async throws(CheckpointError) -> CheckpointFile {
        try await BlockingWorkPool.shared.run("opening", path: path) { () throws(CheckpointError) in try open(path, limits: limits) }
    }

    /// Checks every tensor against its recorded checksum as ``verify(progress:)`` does, from
    /// Swift concurrency: the reading runs on a thread of the library's own (which spreads the
    /// checks over every core as the synchronous call does). Cancelling the task stops the
    /// checks at the next tensor, with code `.cancelled`.
    ///
    /// - Throws: ``CheckpointError`` (`.checksumMismatch`) naming the first damaged tensor or record.
    public func verify(progress: CheckpointProgress? = nil) async throws(CheckpointError) {
        try await BlockingWorkPool.shared.run("verifying", path: path) { () throws(CheckpointError) in try verify(progress: progress) }
    }
}
