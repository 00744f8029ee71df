import Foundation
import Logging

extension CheckpointSaver {
    /// Autoresume for a sharded saver: rank 0 lists the committed checkpoints (manifests of
    /// this run, newest batch first) and shares the list; every rank then tries the same
    /// candidate, loading the pieces it saved, and the ranks move on together to an earlier
    /// one when any rank finds theirs damaged. Shards without a manifest are never candidates.
    /// Then the ranks reconcile their ledgers with the folder (``reconcileSharded(folder:state:resumedFrom:)``).
    ///
    /// With a remote folder the list also holds the manifests in the store (after a local one
    /// of the same batch), so a run on fresh nodes, whose local folders are empty, resumes
    /// from the store: each rank fetches only its own pieces.
    func autoresumeSharded(from folder: String, into state: inout TrainingState) throws(CheckpointError) -> LoadResult? {
        let group = options.processGroup
        var message = RankOutcome.success()
        var listingFailure: CheckpointError?
        if group.rank == 0 {
            do throws(CheckpointError) {
                var found: [(path: String, batch: Int, remote: Bool)] = []
                for path in manifests(in: folder) {
                    guard let manifest = try? ShardManifest.read(path) else {
                        logger.warning("autoresume: skipping \(path), which is not a readable manifest")
                        continue
                    }
                    if !state.runName.isEmpty && !manifest.runName.isEmpty && manifest.runName != state.runName { continue }
                    found.append((path, manifest.batch, false))
                }
                for (url, batch) in try remoteShards?.resumeCandidates(runName: state.runName) ?? [] {
                    found.append((url, batch, true))
                }
                let sorted = found.sorted { ($0.batch, $0.remote ? 0 : 1, $0.path) > ($1.batch, $1.remote ? 0 : 1, $1.path) }
                message = RankOutcome.success(Array(sorted.map(\.path).joined(separator: "\n").utf8))
            } catch {
                listingFailure = error
                message = RankOutcome.failure(error, rank: 0)
            }
        }
        let shared = try group.broadcast(message, from: 0, timeout: group.collectiveTimeout)
        if let listingFailure { throw listingFailure }
        let candidates = String(decoding: try RankOutcome.payload(of: shared, from: 0), as: UTF8.self).split(separator: "\n").map(String.init)

        for candidate in candidates {
            var resumed = state
            var outcome: Result<LoadResult, CheckpointError>
            do throws(CheckpointError) {
                outcome = .success(try loadCheckpoint(
                    candidate, into: &resumed, weightsOnly: options.weightsOnly, ignoreKeys: options.ignoreKeys,
                    limits: options.readingLimits, shardPlan: .asSaved, processGroup: group))
            } catch {
                outcome = .failure(error)
            }
            // 0: loaded; 1: damaged, try an earlier one; 2: an error no earlier checkpoint fixes,
            // followed by the error.
            let status: [UInt8]
            switch outcome {
            case .success: status = [0]
            case .failure(let error) where Self.damage.contains(error.code): status = [1]
            case .failure(let error): status = [2] + RankError(error, rank: group.rank).encoded
            }
            let reported = try group.allGather(status, timeout: group.collectiveTimeout)
            let statuses = reported.map { $0.first ?? 2 }
            if statuses.allSatisfy({ $0 == 0 }), case .success(let result) = outcome {
                state = resumed
                try didResume(from: candidate, state: state)
                try reconcileSharded(folder: folder, state: state, resumedFrom: candidate)
                return result
            }
            if let fatal = statuses.firstIndex(of: 2) {
                if case .failure(let error) = outcome, status.first == 2 { throw error }
                var error = try RankError.decode(reported[fatal].dropFirst(), from: fatal).error
                error.message += " (autoresume: rank \(fatal) cannot load \(candidate))"
                throw error
            }
            if case .failure(let error) = outcome {
                logger.warning("autoresume: \(candidate) is damaged on this rank, trying an earlier checkpoint: \(error)")
            } else {
                logger.warning("autoresume: \(candidate) is damaged on another rank, trying an earlier checkpoint")
            }
            markReplaceable(candidate)
        }
        try reconcileSharded(folder: folder, state: state, resumedFrom: nil)
        return nil
    }

    /// Every sharded-checkpoint manifest in `folder` and its subfolders.
    func manifests(in folder: String) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            if relative.hasSuffix(ShardManifest.suffix) { found.append(FilePaths.join(folder, relative)) }
        }
        return found.sorted()
    }
}
