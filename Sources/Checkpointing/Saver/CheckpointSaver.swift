import Foundation
import Logging
import Synchronization

/// Saves checkpoints on a schedule during training, keeps the right ones, and resumes a run
/// where it stopped: Composer's `CheckpointSaver` callback, for any Swift training loop.
///
/// Call ``fitStart(_:)-8tkym`` (or ``autoresume(into:)-8lm64``) before training, ``batchEnd(_:)-8hhjh`` after each
/// batch, ``epochEnd(_:)-19j0v`` after each epoch and ``fitEnd(_:)-7l1g6`` when training ends:
///
/// ```swift
/// let saver = try CheckpointSaver(options: .init(saveInterval: "500ba", checkpointsToKeep: 3))
/// if try saver.autoresume(into: &state) == nil { try saver.fitStart(state) }
/// for batch in loader {
///     train(batch, &state)
///     try saver.batchEnd(state)
/// }
/// try saver.fitEnd(state)
/// ```
///
/// Beyond Composer: the list of kept checkpoints is stored beside them, so rotation continues
/// after a resume; the latest pointer is a relative symlink and a pointer file; autoresume skips
/// a damaged newest checkpoint for the one before it; saves can run in the background; and, when
/// asked, a SIGTERM makes the next event save before the run stops.
///
/// ## Retention after a kill
///
/// A process can be killed at any moment, including between committing a checkpoint and
/// recording it in the list of kept checkpoints, or between dropping one from the list and
/// deleting it. So when a run starts (``autoresume(into:)-8lm64``, or ``fitStart(_:)-8tkym`` without it) the
/// saver reconciles the list with the folder: it adopts every checkpoint of this run the list
/// lacks (a file the file name template could have made whose header names this run), puts the
/// list in training order and prunes it to ``Options/checkpointsToKeep``, and removes the
/// temporary files of writers that no longer run, whatever file they were writing. It never
/// deletes the checkpoint it resumed from, a newer checkpoint in place of an older one, another
/// run's checkpoint, or a file the template could not have made; with a remote folder, it
/// deletes a local copy only once the remote folder has it, and reconciles the remote folder
/// the same way. A sharded saver does this on every rank at autoresume: rank 0 decides from
/// the manifests, and each rank prunes its own shards, including those of saves never
/// committed. Reading a header is cheap for an uncompressed file; a compressed one is
/// decompressed, which autoresume does anyway, and which reconciliation does only for files
/// the list lacks. Weights-only checkpoints record no run, so they are not adopted.
///
/// ## Saving on SIGTERM
///
/// Schedulers send SIGTERM before they preempt a job. With ``Options/saveOnTermination`` the
/// saver catches it: the next ``batchEnd(_:)-8hhjh`` or ``epochEnd(_:)-19j0v`` saves and throws a
/// ``CheckpointError`` with code `.terminated`, and the training loop should stop. It is off
/// by default, because a library must not change its process's signal handling unasked. When
/// on:
/// - the handler is installed with `sigaction` while the saver is active: from its creation
///   (and again at ``fitStart(_:)-8tkym`` or ``autoresume(into:)-8lm64`` after it ended) until
///   ``fitEnd(_:)-7l1g6``, ``close()-9bxd1``, the save on SIGTERM or the saver's release, whichever comes
///   first. Savers share it; the last one to end restores the disposition it replaced, unless
///   something else has replaced the handler since;
/// - a signal is recorded, then passed on to the handler that was there before when that is a
///   function, so the program's own handling keeps working. The default disposition, which
///   ends the process, is held back until the save: that is the point of the option. A SIGTERM
///   that arrives after the last event and that no save acted on is raised again when the
///   default disposition is restored, so the process still ends;
/// - after the save on SIGTERM the handler is given back at once: a second SIGTERM acts as it
///   would have without the saver.
public final class CheckpointSaver {
    /// How the saver names, schedules and keeps checkpoints.
    public struct Options: Sendable {
        /// The folder template (variables: `{run_name}`, `{rank}`, ...); created when missing.
        public var folder = "{run_name}/checkpoints"
        /// The file name template inside the folder; its extension picks the format.
        public var filename = "ep{epoch}-ba{batch}-rank{rank}"
        /// The latest-pointer template inside the folder, or `nil` for no pointer.
        public var latestFilename: String? = "latest-rank{rank}"
        /// When to save.
        public var saveInterval: SaveInterval = "1ep"
        /// The training length; needed only for `dur` intervals.
        public var maxDuration: TrainingTime?
        /// Checkpoints kept on disk: -1 all, 0 none, N the newest N.
        public var checkpointsToKeep = -1
        /// A folder in an object store to upload every checkpoint to (`s3://bucket/{run_name}/checkpoints`;
        /// variables as for ``folder``), or `nil`. Uploads follow the local commit; the latest pointer
        /// there is a `.symlink` object, moved only once the checkpoint it names is in the store.
        public var remoteFolder: String?
        /// Checkpoints kept in ``remoteFolder``: -1 all, N the newest N; `nil` keeps as many as
        /// ``checkpointsToKeep`` when that is positive, else all (0 keeps none locally: the
        /// remote copies are then the run's checkpoints). A sharded checkpoint counts once, by
        /// its manifest, and is pruned manifest first, then its shards.
        public var remoteCheckpointsToKeep: Int?
        /// Whether to replace checkpoints an earlier run left in the folder.
        public var overwrite = false
        /// Save only the model (see ``saveCheckpoint(_:filename:format:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)-80tki``).
        public var weightsOnly = false
        /// Parts of the state to leave out of every checkpoint.
        public var ignoreKeys: IgnoreKeys?
        /// Write in the background: the training loop waits only for a snapshot of the state.
        public var asynchronous = false
        /// The most bytes a snapshot may copy (borrowed tensors); a larger save runs in the
        /// foreground instead.
        public var snapshotMemoryBudget = 8 << 30
        /// Catch SIGTERM while the saver is active: the next event saves, then throws a
        /// ``CheckpointError`` with code `.terminated`. Off unless asked for, since it changes
        /// the process's signal handling: see "Saving on SIGTERM" in ``CheckpointSaver``.
        public var saveOnTermination = false
        /// Save every checkpoint sharded: each rank writes its part of the state
        /// (these slices; tensors not listed are whole) and rank 0 commits a manifest. The
        /// file name must contain `{rank}`; weights-only is refused. Autoresume then loads on
        /// every rank the pieces it saved. With a ``remoteFolder`` the nodes need no shared
        /// disk: every rank uploads its shard, rank 0 uploads the manifest once all are in the
        /// store, and autoresume on a fresh node loads from the store (see
        /// ``autoresume(into:)-8lm64``); with ``checkpointsToKeep`` 0 the shards go to the store only.
        public var sharding: Sharding?
        /// The compression level and threads when the file name asks for compression.
        public var compression = CompressionOptions()
        /// Bounds on reading checkpoints on resume (nesting depth, decompression, header
        /// sizes, ...), and the nesting depth every save allows: see ``ReadingLimits``.
        public var readingLimits = ReadingLimits()
        /// The processes of the run.
        public var processGroup: any ProcessGroup = SingleProcessGroup()
        /// Reports the bytes of every save the saver makes (phases `saving`, then `uploading`
        /// for a remote folder), in the foreground or in the background: an asynchronous save
        /// reports from the saver's thread, so the callback must be thread-safe, as always.
        /// A reporter in scope at the event (``CheckpointProgress/reporting(_:)``, or the one
        /// an `async` event runs under) takes its place for the save that event makes.
        public var progress: CheckpointProgress?

        public init(
            folder: String = "{run_name}/checkpoints", filename: String = "ep{epoch}-ba{batch}-rank{rank}",
            latestFilename: String? = "latest-rank{rank}", saveInterval: SaveInterval = "1ep",
            maxDuration: TrainingTime? = nil, checkpointsToKeep: Int = -1, remoteFolder: String? = nil,
            remoteCheckpointsToKeep: Int? = nil, overwrite: Bool = false,
            weightsOnly: Bool = false, ignoreKeys: IgnoreKeys? = nil, asynchronous: Bool = false,
            snapshotMemoryBudget: Int = 8 << 30, saveOnTermination: Bool = false, sharding: Sharding? = nil,
            compression: CompressionOptions = CompressionOptions(), readingLimits: ReadingLimits = ReadingLimits(),
            processGroup: any ProcessGroup = SingleProcessGroup(), progress: CheckpointProgress? = nil
        ) {
            self.folder = folder
            self.filename = filename
            self.latestFilename = latestFilename
            self.saveInterval = saveInterval
            self.maxDuration = maxDuration
            self.checkpointsToKeep = checkpointsToKeep
            self.remoteFolder = remoteFolder
            self.remoteCheckpointsToKeep = remoteCheckpointsToKeep
            self.overwrite = overwrite
            self.weightsOnly = weightsOnly
            self.ignoreKeys = ignoreKeys
            self.asynchronous = asynchronous
            self.snapshotMemoryBudget = snapshotMemoryBudget
            self.saveOnTermination = saveOnTermination
            self.sharding = sharding
            self.compression = compression
            self.readingLimits = readingLimits
            self.processGroup = processGroup
            self.progress = progress
        }
    }

    /// What the saver has done so far.
    public struct Statistics: Sendable {
        /// Checkpoints written.
        public var saves = 0
        /// Bytes of the files written.
        public var bytesWritten = 0
        /// Time the training loop spent inside save calls (snapshotting, or whole saves).
        public var stall: Duration = .zero
        /// Time spent writing, in the foreground or the background.
        public var writing: Duration = .zero
    }

    public let options: Options
    let folderTemplate: FilenameTemplate
    let fileTemplate: FilenameTemplate
    let latestTemplate: FilenameTemplate?
    private let remoteFolderTemplate: FilenameTemplate?
    private var schedule: IntervalSchedule
    private let background = BackgroundSaves()
    /// Snapshot memory, reused across asynchronous saves.
    private let arena = SnapshotArena()
    /// Whether the snapshot memory was prepared for a state with borrowed tensors.
    private var preparedSnapshots = false
    /// Shared with background saves, which update it after each commit.
    let book: Bookkeeping
    /// The folder, once known (it may hold `{run_name}`, known from the state).
    private var folder: String?
    /// The remote copies, once the remote folder is known.
    var remote: RemoteCheckpoints?
    /// The remote copies of a sharded saver, once the remote folder is known.
    private(set) var remoteShards: RemoteShardedCheckpoints?
    private var started = false
    /// Whether the ledger was reconciled with the folder (once per saver, at its start).
    var reconciled = false
    /// This saver's claim on the SIGTERM handler while it is active (``Options/saveOnTermination``).
    private var termination: TerminationSignal.Registration?

    /// Checks every template and option now, so a typo fails before training starts.
    public init(options: Options = Options()) throws(CheckpointError) {
        self.options = options
        let placement: Set<FilenameTemplate.Variable> = [.runName, .rank, .localRank, .worldSize, .localWorldSize, .nodeRank]
        folderTemplate = try FilenameTemplate(options.folder, allowedVariables: placement)
        fileTemplate = try FilenameTemplate(options.filename)
        latestTemplate = try options.latestFilename.map { (name) throws(CheckpointError) in
            try FilenameTemplate(name, allowedVariables: placement)
        }
        guard options.checkpointsToKeep >= -1 else {
            throw CheckpointError(.invalidArgument, "checkpointsToKeep must be -1 (all), 0 (none) or a positive count")
        }
        remoteFolderTemplate = try options.remoteFolder.map { (url) throws(CheckpointError) in
            guard ObjectLocation(url) != nil else {
                throw CheckpointError(
                    .invalidArgument, "remoteFolder must be an object-store URL such as s3://bucket/{run_name}/checkpoints", path: url)
            }
            return try FilenameTemplate(url, allowedVariables: placement)
        }
        guard options.remoteCheckpointsToKeep.map({ $0 == -1 || $0 > 0 }) ?? true else {
            throw CheckpointError(.invalidArgument, "remoteCheckpointsToKeep must be -1 (all) or a positive count")
        }
        try refuseLoneProcessInMultiProcessRun(options.processGroup)
        if options.sharding != nil {
            try ShardedSave.check(template: fileTemplate, weightsOnly: options.weightsOnly)
        }
        schedule = try IntervalSchedule(interval: options.saveInterval, maxDuration: options.maxDuration, start: Timestamp())
        book = Bookkeeping()
        try claimTerminationSignal()
    }

    /// The saver's statistics (after waiting for a save in flight).
    public var statistics: Statistics {
        get throws(CheckpointError) {
            try background.wait()
            return book.withLock { $0.statistics }
        }
    }

    /// The saver's statistics now, without waiting for a save in flight (whose write is not
    /// counted yet).
    public var statisticsWithoutWaiting: Statistics {
        book.withLock { $0.statistics }
    }

    /// The kept checkpoints, oldest first, as paths.
    public var keptCheckpoints: [String] {
        get throws(CheckpointError) {
            try background.wait()
            guard let folder else { return [] }
            return book.withLock { $0.ledger.checkpoints.map { FilePaths.join(folder, $0) } }
        }
    }

    // MARK: Events

    /// Starts a new run: checks that the folder holds no checkpoints of this run unless
    /// overwriting is allowed, reconciles the list of kept checkpoints with the folder unless
    /// ``autoresume(into:)-8lm64`` has (see "Retention after a kill" above), and starts the schedule
    /// at `state`'s timestamp.
    public func fitStart(_ state: TrainingState) throws(CheckpointError) {
        let folder = try resolveFolder(for: state)
        if !options.overwrite {
            let existing = existingCheckpoints(in: folder, state: state) + (options.sharding == nil ? [] : manifests(in: folder))
            guard existing.isEmpty else {
                throw CheckpointError(
                    .alreadyExists,
                    "the folder already holds checkpoints of this run (\(existing.prefix(3).map { FilePaths.split($0).name }.joined(separator: ", "))); resume from them with autoresume, allow overwriting, or choose another folder",
                    path: folder)
            }
        }
        if !reconciled { reconcileAtFitStart(folder: folder, state: state) }
        try claimTerminationSignal()
        try schedule = IntervalSchedule(interval: options.saveInterval, maxDuration: options.maxDuration, start: state.timestamp)
        started = true
        try prepareSnapshots(for: state)
    }

    /// After each batch: saves when the interval says so (or after a SIGTERM).
    public func batchEnd(_ state: TrainingState) throws(CheckpointError) { try handle(.batchEnd, state) }

    /// After each epoch: saves when the interval says so (or after a SIGTERM).
    public func epochEnd(_ state: TrainingState) throws(CheckpointError) { try handle(.epochEnd, state) }

    /// When training ends: saves the final checkpoint (unless this batch was just saved) and
    /// waits for every save to finish, throwing the error of any that failed. Gives SIGTERM
    /// back (see ``close()-9bxd1``).
    public func fitEnd(_ state: TrainingState) throws(CheckpointError) {
        defer { releaseTerminationSignal() }
        try ensureStarted(state)
        if schedule.shouldSave(at: .fitEnd, timestamp: state.timestamp) {
            try save(state, waitForCompletion: true)
        }
        try background.wait()
    }

    /// Ends the saver without a final save, for a training loop that stops early: waits for a
    /// save in flight (throwing its error, if it failed) and gives SIGTERM back, as
    /// ``fitEnd(_:)-7l1g6`` and the saver's release also do. Calling it again does nothing more;
    /// a later ``fitStart(_:)-8tkym`` or ``autoresume(into:)-8lm64`` makes the saver active again.
    public func close() throws(CheckpointError) {
        defer { releaseTerminationSignal() }
        try background.wait()
    }

    /// Waits for a save in flight and throws its error, if it failed.
    public func waitForPendingSave() throws(CheckpointError) { try background.wait() }

    private func handle(_ event: TrainingEvent, _ state: TrainingState) throws(CheckpointError) {
        try ensureStarted(state)
        if !preparedSnapshots { try prepareSnapshots(for: state) }
        if termination != nil && TerminationSignal.isPending {
            TerminationSignal.consume()
            // Given back at once: a second SIGTERM, while the loop winds down, acts as it
            // would without the saver.
            defer { releaseTerminationSignal() }
            let path = try save(state, waitForCompletion: true)
            throw CheckpointError(
                .terminated, "SIGTERM received: saved \(path ?? "the checkpoint") at batch \(state.timestamp.batch); stop training")
        }
        if schedule.shouldSave(at: event, timestamp: state.timestamp) {
            try save(state, waitForCompletion: false)
        }
    }

    private func ensureStarted(_ state: TrainingState) throws(CheckpointError) {
        if !started { try fitStart(state) }
    }

    /// For asynchronous saves of borrowed tensors, allocates and faults in the snapshot memory
    /// in the background (see ``SnapshotArena``), so the first save stalls for a copy only; a
    /// save waits for the preparation as it waits for a save in flight.
    private func prepareSnapshots(for state: TrainingState) throws(CheckpointError) {
        guard options.asynchronous else { return }
        let byteCounts = SnapshotArena.borrowedByteCounts(state.tree)
        let total = byteCounts.reduce(0, +)
        guard total > 0, total <= options.snapshotMemoryBudget else { return }
        preparedSnapshots = true
        let arena = arena
        try background.submit { arena.prepare(byteCounts) }
    }

    /// Installs (or shares) the SIGTERM handler, when asked for and not held already.
    private func claimTerminationSignal() throws(CheckpointError) {
        if options.saveOnTermination && termination == nil { termination = try TerminationSignal.register() }
    }

    private func releaseTerminationSignal() {
        termination?.release()
        termination = nil
    }

    // MARK: Saving

    /// Saves `state` now; returns the path (for rank 0).
    @discardableResult
    private func save(_ state: TrainingState, waitForCompletion: Bool) throws(CheckpointError) -> String? {
        let start = ContinuousClock.now
        let folder = try resolveFolder(for: state)
        let values = FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup)
        let sharded = options.sharding != nil
        let rendered = try fileTemplate.renderPath(values)
        let relative = sharded ? ShardedSave.shardPath(rendered) : rendered
        let path = FilePaths.join(folder, relative)
        // What the ledger and the latest pointer name: a sharded checkpoint is its manifest on
        // rank 0 (who commits and prunes it) and its shard on the other ranks.
        let recorded = sharded && options.processGroup.rank == 0 ? relative + ShardManifest.suffix : relative
        let latest = latestTemplate.map { FilePaths.join(folder, $0.render(values)) }
        let position = CheckpointPosition(state.timestamp)
        schedule.didSave(at: state.timestamp)

        try background.wait()
        // A sharded checkpoint exists once its manifest does (shards of a save that never
        // committed do not count), and every rank must reach the same verdict, or the others
        // would wait for it in the save's collectives: all check rank 0's manifest.
        let remoteOnly = remoteShards.map { !$0.keepsLocalCopies } ?? false
        let existing = sharded ? rankZeroManifest(values, remote: remoteOnly) : path
        let exists = try remoteOnly ? remoteShards?.holdsManifest(existing) == true : FileManager.default.fileExists(atPath: existing)
        if !options.overwrite && exists && !book.withLock({ $0.replaceable.contains(existing) }) {
            throw CheckpointError(
                .alreadyExists, "a checkpoint of that name exists; allow overwriting or use {batch} in the file name",
                path: existing)
        }
        let borrowed = state.tree.tensors.reduce(0) { $0 + ($1.tensor.storage == .borrowed ? $1.tensor.byteCount : 0) }
        let runInBackground = options.asynchronous && !waitForCompletion && borrowed <= options.snapshotMemoryBudget
        // A snapshot owns its bytes: later changes to the trainer's buffers cannot reach it.
        let snapshot = runInBackground ? try TrainingState(tree: arena.snapshot(state.tree)) : state
        let options = options
        let book = book
        let remote = options.processGroup.rank == 0 ? remote : nil
        let remoteShards = remoteShards
        // Handed to the save's thread, which is outside the event's reporting scope.
        let progress = CheckpointProgress.current ?? options.progress
        let work: @Sendable () throws(CheckpointError) -> Void = { () throws(CheckpointError) in
            try CheckpointProgress.reporting(to: progress) { () throws(CheckpointError) in
                let writeStart = ContinuousClock.now
                var uploadedOnly: Int?
                var localManifest: String?
                if let sharding = options.sharding {
                    if let remoteShards, !remoteShards.keepsLocalCopies {
                        uploadedOnly = try remoteShards.saveWithoutLocalCopy(
                            snapshot.tree, relative: relative, position: position, values: values, ignoreKeys: options.ignoreKeys,
                            compression: options.compression, limits: options.readingLimits, sharding: sharding,
                            processGroup: options.processGroup)
                    } else {
                        let saved = try ShardedSave.save(
                            snapshot.tree, rendered: path, values: values, ignoreKeys: options.ignoreKeys,
                            compression: options.compression, limits: options.readingLimits, sharding: sharding,
                            processGroup: options.processGroup)
                        localManifest = ShardManifest.path(forRankZeroShard: saved.paths[0])
                    }
                } else {
                    try saveCheckpoint(
                        snapshot, filename: path, weightsOnly: options.weightsOnly, ignoreKeys: options.ignoreKeys,
                        compression: options.compression, limits: options.readingLimits, processGroup: options.processGroup)
                }
                // Committed: a cancelled task does not cut short the records of it.
                try CancellationFlag.ignoring { () throws(CheckpointError) in
                    // Uploaded before local retention runs, so a local copy is pruned only once it is
                    // safe remotely; after a failed upload it is kept.
                    var uploadFailure: CheckpointError?
                    do throws(CheckpointError) {
                        try remote?.didSave(localPath: path, relative: relative, position: position)
                        if let remoteShards, let localManifest {
                            try remoteShards.upload(
                                localShard: path, relative: relative, position: position, localManifest: localManifest,
                                processGroup: options.processGroup)
                        }
                    } catch {
                        uploadFailure = error
                    }
                    try book.didSave(
                        relative: recorded, position: position, written: path, folder: folder, latest: latest,
                        keep: uploadFailure == nil ? options.checkpointsToKeep : -1,
                        rank: options.processGroup.rank, duration: ContinuousClock.now - writeStart, bytes: uploadedOnly)
                    if let uploadFailure { throw uploadFailure }
                }
            }
        }
        if runInBackground {
            try background.submit(work)
        } else {
            try work()
        }
        book.withLock { $0.statistics.stall += ContinuousClock.now - start }
        return path
    }

    // MARK: Resuming

    /// Resumes from the newest complete checkpoint of this run, if there is one.
    ///
    /// The candidates are the kept checkpoints, the latest pointer's target and any file in the
    /// folder the file name template could have made, newest batch first; a file whose header
    /// names another run is not one. Each is verified; a damaged one is skipped with a warning
    /// (and may be overwritten later). Then the list of kept checkpoints is reconciled with the
    /// folder (see "Retention after a kill" above); the checkpoint resumed from is never pruned. `state` must carry
    /// the run name and the model keys, as for ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y``.
    ///
    /// A sharded saver resumes every rank from the same committed checkpoint: rank 0 lists the
    /// manifests (in the local folder and, with a ``Options/remoteFolder``, in the store, so a
    /// run on fresh nodes resumes from there), newest first, and the ranks fall back together
    /// when any rank finds its part damaged or missing.
    ///
    /// - Returns: The load's result, or `nil` when there was nothing to resume from (then start
    ///   with ``fitStart(_:)-8tkym``).
    @discardableResult
    public func autoresume(into state: inout TrainingState) throws(CheckpointError) -> LoadResult? {
        let folder = try resolveFolder(for: state)
        try claimTerminationSignal()
        if options.sharding != nil { return try autoresumeSharded(from: folder, into: &state) }
        var candidates: [(path: String, batch: Int)] = []
        var identities: [String: CheckpointIdentity] = [:]
        for path in Set(resumeCandidates(in: folder, state: state)) {
            let file: CheckpointFile
            do throws(CheckpointError) {
                file = try CheckpointFile.open(path, limits: options.readingLimits)
            } catch {
                // Anything but damage (a decompression limit, say) is thrown, with what to do
                // about it: skipping would resume an older checkpoint without a word.
                guard Self.damage.contains(error.code) || error.code == .unsupportedFormat else { throw error }
                logger.warning("autoresume: skipping \(path), which cannot be opened: \(error)")
                markReplaceable(path)
                continue
            }
            let identity = CheckpointIdentity(tree: file.tree)
            identities[path] = identity
            // Another run's checkpoint, in a folder runs share, is not this run's to resume.
            if let runName = identity.runName, !runName.isEmpty, !state.runName.isEmpty, runName != state.runName { continue }
            candidates.append((path, identity.position?.batch ?? -1))
        }
        candidates.sort { ($0.batch, $0.path) > ($1.batch, $1.path) }
        for candidate in candidates {
            do throws(CheckpointError) {
                let result = try resume(from: candidate.path, into: &state)
                reconcile(folder: folder, state: state, identities: identities, resumedFrom: candidate.path)
                return result
            } catch where Self.damage.contains(error.code) {
                logger.warning("autoresume: \(candidate.path) is damaged, trying an earlier checkpoint: \(error)")
                markReplaceable(candidate.path)
            }
        }
        let result = try autoresumeFromRemote(into: &state)
        reconcile(folder: folder, state: state, identities: identities, resumedFrom: result?.path)
        return result
    }

    /// Loads `path` into `state` (which changes only on success) and restarts the schedule
    /// there, counting the checkpoint as saved so the fit end does not save it again.
    private func resume(from path: String, into state: inout TrainingState) throws(CheckpointError) -> LoadResult {
        var resumed = state
        let result = try loadCheckpoint(
            path, into: &resumed, weightsOnly: options.weightsOnly, ignoreKeys: options.ignoreKeys,
            limits: options.readingLimits, processGroup: options.processGroup)
        state = resumed
        try didResume(from: path, state: state)
        return result
    }

    /// Restarts the schedule at a resumed state, counting the checkpoint as saved.
    func didResume(from path: String, state: TrainingState) throws(CheckpointError) {
        schedule = try IntervalSchedule(interval: options.saveInterval, maxDuration: options.maxDuration, start: state.timestamp)
        schedule.didSave(at: state.timestamp)
        started = true
        try prepareSnapshots(for: state)
        logger.info("autoresume: resumed from \(path) at batch \(state.timestamp.batch)")
    }

    /// The manifest of the sharded checkpoint a save with `values` makes: beside rank 0's shard,
    /// in rank 0's folder (the folder template may name the rank too), or with `remote` in
    /// rank 0's remote folder.
    private func rankZeroManifest(_ values: FilenameValues, remote: Bool = false) -> String {
        var rankZero = values
        (rankZero.rank, rankZero.localRank, rankZero.nodeRank) = (0, 0, 0)
        let name = ShardedSave.shardPath(fileTemplate.render(rankZero))
        if remote, let remoteShards { return remoteShards.manifestURL(rankZeroShard: name) }
        return ShardManifest.path(forRankZeroShard: FilePaths.join(folderTemplate.render(rankZero), name))
    }

    /// Lets later saves replace a damaged checkpoint that autoresume skipped.
    func markReplaceable(_ path: String) {
        book.withLock { _ = $0.replaceable.insert(path) }
    }

    /// Resumes from the remote folder when no local checkpoint could be loaded (a run moved to
    /// another machine): the latest pointer's target first, then the kept list newest first.
    private func autoresumeFromRemote(into state: inout TrainingState) throws(CheckpointError) -> LoadResult? {
        guard let remote else { return nil }
        for candidate in try remote.resumeCandidates() {
            do throws(CheckpointError) {
                return try resume(from: candidate, into: &state)
            } catch where Self.damage.contains(error.code) || error.code == .objectStore {
                logger.warning("autoresume: cannot load \(candidate), trying an earlier checkpoint: \(error)")
            }
        }
        return nil
    }

    /// Failures that mean a checkpoint file is damaged, so an earlier one should be tried. Any
    /// other failure (model keys that do not match, say) would fail for every checkpoint of the
    /// run and is thrown.
    static let damage: Set<CheckpointError.Code> = [.checksumMismatch, .malformed, .notFound, .io]

    private func resumeCandidates(in folder: String, state: TrainingState) -> [String] {
        var paths = book.withLock { $0.ledger.checkpoints.map { FilePaths.join(folder, $0) } }
        if let latestTemplate {
            let values = FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup)
            if let target = LatestPointer.target(of: FilePaths.join(folder, latestTemplate.render(values))) {
                paths.append(target)
            }
        }
        paths += existingCheckpoints(in: folder, state: state)
        return paths.filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// Files in `folder` (and its subfolders) that the file name template could have made for
    /// this run and rank.
    private func existingCheckpoints(in folder: String, state: TrainingState) -> [String] {
        let values = FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup)
        let known: Set<FilenameTemplate.Variable> = [.runName, .rank, .localRank, .worldSize, .localWorldSize, .nodeRank]
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            let name = FilePaths.split(relative).name
            guard !name.hasPrefix("."), fileTemplate.couldHaveRendered(relative, known: known, values: values) else { continue }
            var isFolder: ObjCBool = false
            let path = FilePaths.join(folder, relative)
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
                found.append(path)
            }
        }
        return found.sorted()
    }

    /// Renders the folder for this run and rank, and loads the retention ledger the first time.
    private func resolveFolder(for state: TrainingState) throws(CheckpointError) -> String {
        if let folder { return folder }
        let rendered = try folderTemplate.renderPath(
            FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup), isFolder: true)
        let ledger = try RetentionLedger.load(from: RetentionLedger.path(folder: rendered, rank: options.processGroup.rank))
        book.withLock { $0.ledger = ledger }
        if let remoteFolderTemplate, let location = ObjectLocation(try remoteFolderTemplate.renderPath(
            FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup), isFolder: true))
        {
            let keep = options.remoteCheckpointsToKeep ?? (options.checkpointsToKeep > 0 ? options.checkpointsToKeep : -1)
            let latest = latestTemplate?.render(
                FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup))
            if options.sharding != nil {
                var rankZero = FilenameValues(timestamp: state.timestamp, runName: state.runName, processGroup: options.processGroup)
                (rankZero.rank, rankZero.localRank, rankZero.nodeRank) = (0, 0, 0)
                remoteShards = RemoteShardedCheckpoints(
                    folder: location, rankZeroFolder: ObjectLocation(remoteFolderTemplate.render(rankZero)) ?? location, keep: keep,
                    latestName: latest, keepsLocalCopies: options.checkpointsToKeep != 0, rank: options.processGroup.rank)
            } else {
                remote = RemoteCheckpoints(folder: location, keep: keep, latestName: latest, rank: options.processGroup.rank)
            }
        }
        folder = rendered
        return rendered
    }
}

/// The saver's records, updated by background saves after each commit.
final class Bookkeeping: Sendable {
    struct Records {
        var ledger = RetentionLedger()
        var statistics = CheckpointSaver.Statistics()
        /// Damaged checkpoints found by autoresume, which later saves may replace.
        var replaceable: Set<String> = []
    }

    private let records = Mutex(Records())

    func withLock<R>(_ body: (inout Records) throws -> R) rethrows -> R {
        try records.withLock { try body(&$0) }
    }

    /// After a committed save: record it, prune old checkpoints, persist the list, move the
    /// latest pointer. Deletion comes after the new file is durable, so a crash here leaves at
    /// worst one checkpoint too many, which the next run's reconciliation prunes.
    /// `bytes`: the size of a checkpoint written to an object store only (else the file's).
    func didSave(
        relative: String, position: CheckpointPosition, written: String, folder: String, latest: String?, keep: Int,
        rank: Int, duration: Duration, bytes: Int? = nil
    ) throws(CheckpointError) {
        let path = FilePaths.join(folder, relative)
        let size = bytes ?? (try? FileManager.default.attributesOfItem(atPath: written)[.size] as? Int) ?? 0
        let (ledger, removed) = withLock { records -> (RetentionLedger, [String]) in
            records.statistics.saves += 1
            records.statistics.bytesWritten += size
            records.statistics.writing += duration
            records.replaceable.remove(path)
            let removed = records.ledger.record(relative, at: position, keep: keep)
            return (records.ledger, removed)
        }
        if let latest, keep != 0 { try LatestPointer.update(latest, to: path) }
        try ledger.save(to: RetentionLedger.path(folder: folder, rank: rank))
        for old in removed {
            SystemCalls.discard(FilePaths.join(folder, old))
            if old.hasSuffix(ShardManifest.suffix) {
                // The manifest went first, so the checkpoint is no longer committed; then rank 0's shard.
                SystemCalls.discard(FilePaths.join(folder, String(old.dropLast(ShardManifest.suffix.count))))
            }
        }
    }
}
