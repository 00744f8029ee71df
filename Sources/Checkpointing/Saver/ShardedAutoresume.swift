import Foundation
import Logging

extension CheckpointSaver {
    /// Autoresume for a sharded saver: rank 0 lists the committed checkpoints (manifests of
    /// this run, newest batch first) and shares the list; every rank then tries the same
    /// candidate, loading the pieces it saved, and the ranks move on together to an earlier
    /// one when any rank finds theirs damaged. Shards without a manifest are never candidates.
    /// Then the ranks reconcile their ledgers with the folder (``reconcileSharded(folder:state:resumedFrom:)``).
    func autoresumeSharded(from folder: String, into state: inout TrainingState) throws -> LoadResult? {
        let group = options.processGroup
        var candidates: [String] = []
        if group.rank == 0 {
            var found: [(path: String, batch: Int)] = []
            for path in manifests(in: folder) {
                guard let manifest = try? ShardManifest.read(path) else {
                    logger.warning("autoresume: skipping \(path), which is not a readable manifest")
                    continue
                }
                if !state.runName.isEmpty && !manifest.runName.isEmpty && manifest.runName != state.runName { continue }
                found.append((path, manifest.batch))
            }
            candidates = found.sorted { ($0.batch, $0.path) > ($1.batch, $1.path) }.map(\.path)
        }
        let shared = try group.broadcast(Array(candidates.joined(separator: "\n").utf8), from: 0, timeout: group.collectiveTimeout)
        candidates = String(decoding: shared, as: UTF8.self).split(separator: "\n").map(String.init)

        for candidate in candidates {
            var resumed = state
            var outcome: Result<LoadResult, any Error>
            do {
                outcome = .success(try loadCheckpoint(
                    candidate, into: &resumed, weightsOnly: options.weightsOnly, ignoreKeys: options.ignoreKeys,
                    decompressionLimits: options.decompressionLimits, shardPlan: .asSaved, processGroup: group))
            } catch {
                outcome = .failure(error)
            }
            // 0: loaded; 1: damaged, try an earlier one; 2: an error no earlier checkpoint fixes.
            let status: UInt8
            switch outcome {
            case .success: status = 0
            case .failure(let error as CheckpointError) where Self.damage.contains(error.code): status = 1
            case .failure: status = 2
            }
            let statuses = try group.allGather([status], timeout: group.collectiveTimeout).map { $0.first ?? 2 }
            if statuses.allSatisfy({ $0 == 0 }), case .success(let result) = outcome {
                state = resumed
                try didResume(from: candidate, state: state)
                try reconcileSharded(folder: folder, state: state, resumedFrom: candidate)
                return result
            }
            if let fatal = statuses.firstIndex(of: 2) {
                if case .failure(let error) = outcome, status == 2 { throw error }
                throw CheckpointError(.distributed, "autoresume: rank \(fatal) cannot load \(candidate); see its log", path: candidate)
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
