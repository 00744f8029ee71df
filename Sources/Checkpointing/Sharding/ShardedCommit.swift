/// The last step of a sharded save, and of a sharded saver's upload: rank 0 commits the
/// checkpoint by writing its manifest once every rank has reported success, and every rank
/// learns the outcome.
enum ShardedCommit {
    /// Runs `commit` on rank 0 when no rank reported an error, and shares the outcome.
    ///
    /// When the checkpoint is not committed, this rank removes `discard` (its shard, now
    /// garbage) and throws: its own `failure` when it is the rank that failed, else the error
    /// of the rank that did (its code, path and ``CheckpointError/rank``), which says that the
    /// checkpoint was not committed.
    ///
    /// - Parameters:
    ///   - errors: Every rank's reported failure, in rank order (`nil`: it succeeded).
    ///   - what: What the ranks did, for the message (`"wrote its shard"`).
    static func finish(
        errors: [RankError?], failure: CheckpointError?, discard: String?, manifestPath: String, what: String,
        group: any ProcessGroup, commit: () throws(CheckpointError) -> Void
    ) throws(CheckpointError) {
        var outcome = RankOutcome.success()
        var decided: CheckpointError?
        if group.rank == 0 {
            do throws(CheckpointError) {
                if let error = RankError.combined(errors, outcome: "not every rank \(what); the sharded checkpoint was not committed") {
                    throw error
                }
                do {
                    try commit()
                } catch {
                    // An upload whose answer was lost may have landed: it must not name shards about to go.
                    RemoteShards.discard(manifestPath)
                    throw error
                }
            } catch {
                decided = error
                outcome = RankOutcome.failure(error, rank: 0)
            }
        }
        let shared = try group.broadcast(outcome, from: 0, timeout: group.collectiveTimeout)
        do throws(CheckpointError) {
            _ = try RankOutcome.payload(of: shared, from: 0)
        } catch {
            if let discard { RemoteShards.discard(discard) }
            throw failure ?? decided ?? error
        }
    }
}
