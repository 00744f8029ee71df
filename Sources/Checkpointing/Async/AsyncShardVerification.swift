// The `async` overload of checking a committed sharded checkpoint: the synchronous one runs on
// ``BlockingWorkPool``'s threads, and stops with `.cancelled` when the task is cancelled.

extension ShardManifest {
    /// Checks every shard of the committed checkpoint as
    /// ``verifyShards(manifestPath:limits:)`` does, from Swift concurrency: the reading runs on
    /// a thread of the library's own while the caller's task is suspended. Cancelling the task
    /// stops the checks at the next shard or tensor, with code `.cancelled`.
    ///
    /// - Throws: ``CheckpointError`` naming the first shard and what is wrong with it.
    public func verifyShards(manifestPath: String, limits: ReadingLimits = ReadingLimits()) async throws(CheckpointError) {
        try await BlockingWorkPool.shared.run("verifying shards", path: manifestPath) { () throws(CheckpointError) in
            try verifyShards(manifestPath: manifestPath, limits: limits)
        }
    }
}
