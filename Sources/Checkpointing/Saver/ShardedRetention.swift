import Foundation
import Logging

/// What rank 0 tells the others after reconciling the manifests.
private struct ShardedRetentionDecision: Codable {
    /// The kept checkpoints, oldest first, by (epoch, batch); `nil` when rank 0 could not
    /// decide, and nothing is pruned.
    var kept: [[Int]]?
    /// The checkpoints pruned, whose shards every rank deletes.
    var pruned: [[Int]] = []
    /// Whether a shard of this run that belongs to no kept checkpoint may be deleted: false
    /// when some manifest could not be read, or a kept one has no known position, since its
    /// shards could then not be told from leftovers.
    var deleteOthers = false
}

extension CheckpointSaver {
    /// Reconciliation for a sharded saver, a collective of every rank (see
    /// ``reconcile(folder:state:identities:resumedFrom:)`` for what it guarantees).
    ///
    /// Rank 0 reconciles its ledger of manifests: it adopts the manifests of this run the
    /// ledger lacks, orders and prunes them (never `resumedFrom`), deletes the pruned
    /// manifests, and tells every rank which checkpoints are kept, by (epoch, batch), since
    /// ranks may not share a disk or a path. Each rank then keeps its shards of those, deletes
    /// its other shards of this run (of pruned checkpoints, or of saves that were never
    /// committed), and rewrites its ledger. A shard's position comes from the rank's ledger,
    /// else from its header.
    func reconcileSharded(folder: String, state: TrainingState, resumedFrom: String?) throws(CheckpointError) {
        reconciled = true
        let group = options.processGroup
        var decision = ShardedRetentionDecision()
        // Rank 0's positions of its own shards: those of the manifests beside them.
        var rankZeroShards: [String: CheckpointPosition] = [:]
        var summary = ReconcileSummary()
        if group.rank == 0 {
            (decision, rankZeroShards, summary.pruned, summary.adopted) = decideManifests(folder: folder, state: state, resumedFrom: resumedFrom)
        }
        let message: [UInt8]
        do { message = Array(try JSONEncoder().encode(decision)) } catch {
            throw CheckpointError(.distributed, "cannot encode the retention decision: \(error)")
        }
        let shared = try group.broadcast(message, from: 0, timeout: group.collectiveTimeout)
        guard let received = try? JSONDecoder().decode(ShardedRetentionDecision.self, from: Data(shared)) else {
            throw CheckpointError(.distributed, "rank 0 sent a retention decision this rank cannot read; do all ranks run the same build?")
        }
        decision = received

        let scan = scanFolder(folder, state: state)
        summary.temporariesRemoved = scan.temporariesRemoved
        defer {
            if !summary.isEmpty {
                logger.notice(
                    "retention: adopted \(summary.adopted), pruned \(summary.pruned), removed \(summary.temporariesRemoved) temporary files in \(folder)")
            }
        }
        guard let kept = decision.kept else { return }
        var ledger = book.withLock { $0.ledger }
        let recorded = ledger.positions ?? [:]
        var keptShards: [[Int]: String] = [:]
        for shard in scan.candidates {
            let position = (group.rank == 0 ? rankZeroShards[shard] : recorded[shard])
                ?? CheckpointIdentity.read(FilePaths.join(folder, shard), limits: options.readingLimits)
                    .flatMap { $0.runName == state.runName ? $0.position : nil }
            guard let position else { continue }
            let key = [position.epoch, position.batch]
            if kept.contains(key) {
                keptShards[key] = shard
            } else if decision.pruned.contains(key) || decision.deleteOthers,
                (try? SystemCalls.unlink(FilePaths.join(folder, shard))) == true, group.rank != 0
            {
                summary.pruned.append(shard)
            }
        }
        guard group.rank != 0 else { return }
        let before = ledger
        ledger.checkpoints = kept.compactMap { keptShards[$0] }
        ledger.positions = recorded.filter { ledger.checkpoints.contains($0.key) }
        do {
            if ledger != before { try ledger.save(to: RetentionLedger.path(folder: folder, rank: group.rank)) }
            book.withLock { $0.ledger = ledger }
            try moveLatestPointer(folder: folder, state: state, to: ledger.checkpoints.last)
        } catch {
            logger.warning("retention: cannot update the list of kept shards or the latest pointer in \(folder): \(error)")
        }
    }

    /// Rank 0's part: reconciles the ledger of manifests and deletes the pruned manifests.
    /// Returns the decision for every rank, the positions of rank 0's shards of this run's
    /// checkpoints, and the pruned and adopted manifests.
    private func decideManifests(
        folder: String, state: TrainingState, resumedFrom: String?
    ) -> (ShardedRetentionDecision, [String: CheckpointPosition], [String], [String]) {
        var thisRun: [String: CheckpointPosition] = [:]
        var everyManifestRead = true
        for path in manifests(in: folder) {
            guard let relative = Self.relative(path, inside: folder) else { continue }
            guard let manifest = try? ShardManifest.read(path) else {
                everyManifestRead = false
                continue
            }
            if manifest.runName == state.runName {
                thisRun[relative] = CheckpointPosition(epoch: manifest.epoch, batch: manifest.batch)
            }
        }
        var ledger = book.withLock { $0.ledger }
        let before = ledger
        ledger.forgetMissing { FileManager.default.fileExists(atPath: FilePaths.join(folder, $0)) }
        let adopted = thisRun.filter { !ledger.checkpoints.contains($0.key) }
        let protected = Set(resumedFrom.flatMap { Self.relative($0, inside: folder) }.map { [$0] } ?? [])
        let pruned = ledger.reconcile(
            adopting: adopted, keep: options.checkpointsToKeep, protected: protected, mayPrune: { _ in true },
            position: { thisRun[$0] })
        do {
            if ledger != before { try ledger.save(to: RetentionLedger.path(folder: folder, rank: 0)) }
            book.withLock { $0.ledger = ledger }
            // Each manifest first: the checkpoint stops being committed before its shards go.
            for old in pruned { SystemCalls.discard(FilePaths.join(folder, old)) }
        } catch {
            logger.warning("retention: cannot update the list of kept checkpoints in \(folder), so nothing is pruned: \(error)")
            return (ShardedRetentionDecision(), [:], [], [])
        }
        do {
            try moveLatestPointer(folder: folder, state: state, to: ledger.checkpoints.last)
        } catch {
            logger.warning("retention: cannot move the latest pointer in \(folder): \(error)")
        }
        let keptPositions = ledger.checkpoints.map { thisRun[$0] ?? ledger.positions?[$0] }
        let decision = ShardedRetentionDecision(
            kept: keptPositions.compactMap { $0.map { [$0.epoch, $0.batch] } },
            pruned: pruned.compactMap { thisRun[$0] ?? before.positions?[$0] }.map { [$0.epoch, $0.batch] },
            deleteOthers: everyManifestRead && keptPositions.allSatisfy { $0 != nil })
        var shards: [String: CheckpointPosition] = [:]
        for (manifest, position) in thisRun {
            shards[String(manifest.dropLast(ShardManifest.suffix.count))] = position
        }
        return (decision, shards, pruned, adopted.keys.sorted())
    }
}
