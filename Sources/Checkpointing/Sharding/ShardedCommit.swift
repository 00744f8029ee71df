/// The last step of a sharded save, and of a sharded saver's upload: rank 0 commits the
/// checkpoint by writing its manifest once every rank has reported success, and every rank
/// learns the outcome.
enum ShardedCommit {
    /// Runs `commit` on rank 0 when no rank reported an error, and shares the outcome.
    ///
    /// When the checkpoint is not committed, this rank removes `discard` (its shard, now
    /// garbage) and throws: its own `failure` when it is the rank that failed, else a
    /// `.distributed` error saying which rank failed and why.
    ///
    /// - Parameters:
    ///   - errors: Every rank's reported failure, in rank order (`nil`: it succeeded).
    ///   - what: What the ranks did, for the message (`"wrote its shard"`).
    static func finish(
        errors: [String?], failure: (any Error)?, discard: String?, manifestPath: String, what: String,
        group: any ProcessGroup, commit: () throws(CheckpointError) -> Void
    ) throws {
        var outcome: [UInt8] = [1]
        if group.rank == 0 {
            do throws(CheckpointError) {
                let failures = errors.enumerated().compactMap { rank, error in error.map { "rank \(rank): \($0)" } }
                guard failures.isEmpty else {
                    throw CheckpointError(.io, "not every rank \(what): " + failures.joined(separator: "; "))
                }
                do {
                    try commit()
                } catch {
                    // An upload whose answer was lost may have landed: it must not name shards about to go.
                    RemoteShards.discard(manifestPath)
                    throw error
                }
            } catch {
                outcome = [0] + Array("\(error)".utf8)
            }
        }
        let shared = try group.broadcast(outcome, from: 0, timeout: group.collectiveTimeout)
        guard shared.first == 1 else {
            if let discard { RemoteShards.discard(discard) }
            if let failure { throw failure }
            throw CheckpointError(
                .distributed, "the sharded checkpoint was not committed: \(String(decoding: shared.dropFirst(), as: UTF8.self))",
                path: manifestPath)
        }
    }
}
