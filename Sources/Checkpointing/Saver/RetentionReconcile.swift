import Foundation
import Logging

/// What a checkpoint file records about the run that saved it: its name and where in training
/// the save happened. A weights-only checkpoint records neither.
struct CheckpointIdentity: Sendable {
    var runName: String?
    var position: CheckpointPosition?

    init(tree: StateValue) {
        let state = tree.dictValue?["state"]?.dictValue
        runName = state?["run_name"]?.stringValue
        if let fields = state?["timestamp"]?.dictValue?["Timestamp"]?.dictValue, let timestamp = try? Timestamp(composerTree: fields) {
            position = CheckpointPosition(timestamp)
        }
    }

    /// Opens `path` to read it (the header alone for an uncompressed file; a compressed one is
    /// decompressed); `nil` when it cannot be opened.
    static func read(_ path: String, limits: ReadingLimits) -> CheckpointIdentity? {
        guard let file = try? CheckpointFile.open(path, limits: limits) else { return nil }
        return CheckpointIdentity(tree: file.tree)
    }
}

/// What one reconciliation did, for the log.
struct ReconcileSummary {
    var adopted: [String] = []
    var pruned: [String] = []
    var temporariesRemoved = 0

    var isEmpty: Bool { adopted.isEmpty && pruned.isEmpty && temporariesRemoved == 0 }
}

extension CheckpointSaver {
    /// Reconciles at ``fitStart(_:)`` when ``autoresume(into:)`` has not.
    ///
    /// A sharded saver only removes this rank's abandoned temporaries here: its reconciliation
    /// is a collective that autoresume runs on every rank, while a start may fail on some
    /// ranks only (a folder that already holds checkpoints), which would leave the others
    /// waiting in it.
    func reconcileAtFitStart(folder: String, state: TrainingState) {
        if options.sharding != nil {
            reconciled = true
            let removed = scanFolder(folder, state: state).temporariesRemoved
            if removed > 0 { logger.notice("retention: removed \(removed) temporary files left by killed processes in \(folder)") }
        } else {
            reconcile(folder: folder, state: state, identities: [:], resumedFrom: nil)
        }
    }

    /// Brings the ledger back in line with the folder when a run starts, so that no kill, at
    /// any moment, leaves a checkpoint that later runs never prune or a temporary file that
    /// outlives its writer:
    /// - temporaries in the folder whose writing process is gone are removed, whatever name
    ///   they were to take;
    /// - entries whose files are gone are dropped;
    /// - committed checkpoints of this run the ledger lacks (a kill between a commit and the
    ///   ledger's update, or between the ledger's update and a pruned file's deletion) are
    ///   adopted: files the file name template could have made, whose header names this run;
    /// - the ledger is put in training order and pruned to ``Options/checkpointsToKeep``,
    ///   never deleting `resumedFrom`, another run's checkpoint or a file the template could
    ///   not have made; with a remote folder, a local copy only once the remote folder has it;
    /// - the remote folder is reconciled the same way, and the latest pointers moved to the
    ///   newest kept checkpoint if a kill left them behind.
    ///
    /// Housekeeping: a failure is logged, not thrown; the next save reports a folder that
    /// cannot be written.
    ///
    /// - Parameter identities: files autoresume has opened already, by path.
    func reconcile(folder: String, state: TrainingState, identities known: [String: CheckpointIdentity], resumedFrom: String?) {
        reconciled = true
        var identities = known
        var unreadable: Set<String> = []
        func identity(_ relative: String) -> CheckpointIdentity? {
            let path = FilePaths.join(folder, relative)
            if let found = identities[path] { return found }
            guard !unreadable.contains(path), let found = CheckpointIdentity.read(path, limits: options.readingLimits) else {
                unreadable.insert(path)
                return nil
            }
            identities[path] = found
            return found
        }

        let scan = scanFolder(folder, state: state)
        var summary = ReconcileSummary(temporariesRemoved: scan.temporariesRemoved)
        // The remote folder first: a local copy may be deleted only once it is safe there.
        // Only rank 0 uploads, so only rank 0 keeps the remote folder.
        var safeRemotely: (String) -> Bool = { _ in true }
        if let remote, options.processGroup.rank == 0 {
            do {
                let copies = try remote.reconcile(
                    runName: state.runName, matches: { self.couldHaveMade($0, state: state) },
                    resumedFrom: resumedFrom.flatMap { ObjectLocation($0) },
                    identity: { relative, size in
                        let local = FilePaths.join(folder, relative)
                        if Self.fileSize(local) == size, let found = identity(relative) { return found }
                        return CheckpointIdentity.read(remote.folder.appending(relative).description, limits: self.options.readingLimits)
                    })
                safeRemotely = { relative in copies[relative].map { $0 == Self.fileSize(FilePaths.join(folder, relative)) } ?? false }
            } catch {
                logger.warning("retention: cannot reconcile the remote folder \(remote.folder), so no local checkpoint is pruned now: \(error)")
                safeRemotely = { _ in false }
            }
        }

        var ledger = book.withLock { $0.ledger }
        let before = ledger
        ledger.forgetMissing { FileManager.default.fileExists(atPath: FilePaths.join(folder, $0)) }
        let listed = Set(ledger.checkpoints)
        var adopted: [String: CheckpointPosition] = [:]
        for relative in scan.candidates where !listed.contains(relative) {
            guard let found = identity(relative) else {
                logger.warning("retention: \(FilePaths.join(folder, relative)) cannot be opened; it is left alone")
                continue
            }
            // Another run's file in a shared folder, or a weights-only one, which records no
            // run, is not this run's to prune.
            guard found.runName == state.runName, let position = found.position else { continue }
            adopted[relative] = position
        }
        let protected = Set(resumedFrom.flatMap { Self.relative($0, inside: folder) }.map { [$0] } ?? [])
        summary.adopted = adopted.keys.sorted()
        summary.pruned = ledger.reconcile(
            adopting: adopted, keep: options.checkpointsToKeep, protected: protected, mayPrune: safeRemotely,
            position: { identity($0)?.position })
        do {
            if ledger != before { try ledger.save(to: RetentionLedger.path(folder: folder, rank: options.processGroup.rank)) }
            book.withLock { $0.ledger = ledger }
            for old in summary.pruned { SystemCalls.discard(FilePaths.join(folder, old)) }
        } catch {
            logger.warning("retention: cannot update the list of kept checkpoints in \(folder), so nothing is pruned now: \(error)")
            summary.pruned = []
        }
        do {
            try moveLatestPointer(folder: folder, state: state, to: book.withLock { $0.ledger.checkpoints.last })
        } catch {
            logger.warning("retention: cannot move the latest pointer in \(folder): \(error)")
        }
        if !summary.isEmpty {
            logger.notice(
                "retention: adopted \(summary.adopted), pruned \(summary.pruned), removed \(summary.temporariesRemoved) temporary files in \(folder)")
        }
    }

    /// Points the latest pointer at `newest` (relative to `folder`) when a kill left it elsewhere.
    func moveLatestPointer(folder: String, state: TrainingState, to newest: String?) throws(CheckpointError) {
        guard let latestTemplate, options.checkpointsToKeep != 0, let newest else { return }
        let values = FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup)
        let link = FilePaths.join(folder, latestTemplate.render(values))
        let target = FilePaths.join(folder, newest)
        if LatestPointer.target(of: link).map(Self.standardized) != Self.standardized(target) {
            try LatestPointer.update(link, to: target)
        }
    }

    /// Walks `folder`: the files (relative paths) the file name template could have made for
    /// this run and rank (shards, for a sharded saver), and the abandoned temporaries, which
    /// it removes.
    func scanFolder(_ folder: String, state: TrainingState) -> (candidates: [String], temporariesRemoved: Int) {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return ([], 0) }
        var candidates: [String] = []
        var removed = 0
        while let relative = walker.nextObject() as? String {
            let name = FilePaths.split(relative).name
            let path = FilePaths.join(folder, relative)
            if name.hasPrefix(".") {
                if AbandonedTemporaries.isAbandoned(name, at: path), (try? SystemCalls.unlink(path)) == true { removed += 1 }
                continue
            }
            var isFolder: ObjCBool = false
            guard couldHaveMade(relative, state: state),
                FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue
            else { continue }
            candidates.append(relative)
        }
        return (candidates.sorted(), removed)
    }

    /// Whether a save of this run and rank could have written `relative`: a rendering of the
    /// file name template, or for a sharded saver the shard of one (`.tar` added).
    func couldHaveMade(_ relative: String, state: TrainingState) -> Bool {
        let values = FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup)
        let known: Set<FilenameTemplate.Variable> = [.runName, .rank, .localRank, .worldSize, .localWorldSize, .nodeRank]
        guard options.sharding != nil else { return fileTemplate.couldHaveRendered(relative, known: known, values: values) }
        var renderings = [relative]
        if let tar = relative.range(of: ".tar", options: .backwards) { renderings.append(relative.replacingCharacters(in: tar, with: "")) }
        return renderings.contains { ShardedSave.shardPath($0) == relative && fileTemplate.couldHaveRendered($0, known: known, values: values) }
    }

    /// `path` relative to `folder`, or `nil` when it is not inside it.
    static func relative(_ path: String, inside folder: String) -> String? {
        let (path, folder) = (standardized(path), standardized(folder))
        return path.hasPrefix(folder + "/") ? String(path.dropFirst(folder.count + 1)) : nil
    }

    /// An absolute path without `.` and `..` components, to compare paths spelt differently.
    static func standardized(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    static func fileSize(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int
    }
}
