import Synchronization

/// Reports how far the long operations of a checkpoint have come: saving, verifying,
/// decompressing, uploading, downloading, in bytes.
///
/// Pass one to an entry point that takes `progress:`
/// (``saveCheckpoint(_:filename:format:weightsOnly:ignoreKeys:compression:limits:sharding:processGroup:progress:)-80tki``,
/// ``loadCheckpoint(_:into:weightsOnly:strict:ignoreKeys:verifyChecksums:limits:shardPlan:processGroup:progress:)-9jr1y``,
/// ``loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:progress:)-29crs``,
/// ``CheckpointFile/verify(progress:)-8jpej``), or run any code under ``reporting(_:)`` so that every
/// operation it starts on this thread reports to it (opening a compressed file reports its
/// decompression; an object store module reports uploads and downloads).
///
/// The code that moves the bytes reports as it goes; `onUpdate` is called at most once per
/// `interval` while a phase runs (the first bytes of a phase and its end are always
/// reported), on whichever thread moved the bytes, so it must be quick and thread-safe.
/// Counting costs one atomic addition per piece of work (a tensor, a write, an upload part):
/// no lock is taken on the hot paths.
///
/// A phase is one file, or one step on it:
/// - a save reports `saving` (a Hugging Face checkpoint: one phase over all its shard
///   files), then `uploading` when the name is an object store's;
/// - a sharded save reports, on each rank, the phases of that rank's one shard;
/// - a load reports `downloading` (an object store), `decompressing` (a compressed file), then
///   `verifying`; a weights-only load from an object store that fetches only the model's
///   tensors reports `downloading` over the bytes it fetches, then `verifying`;
/// - a sharded load, and a load of a DCP folder, report one phase on each rank, `loading`,
///   over the bytes of the saved pieces (DCP: the archives) the rank reads, counted as each is
///   read and checked; the shards' own steps report nothing of their own, so a compressed
///   shard, which is decompressed whole, counts when its pieces are read.
///
/// `CheckpointSaver` reports its saves to ``CheckpointSaver/Options/progress``, or to the
/// reporter in scope at the event that saves; a background save reports from the saver's thread.
/// The `async` overloads report to the reporter in scope in the calling task (see
/// ``reporting(isolation:_:)``), or the one passed as `progress:`.
///
/// ```swift
/// let progress = CheckpointProgress { update in
///     print("\(update.phase): \(update.completedBytes) of \(update.totalBytes) bytes")
/// }
/// try saveCheckpoint(state, filename: "ep{epoch}.safetensors", progress: progress)
/// ```
public final class CheckpointProgress: Sendable {
    /// Where a phase stands.
    public struct Update: Sendable, Equatable {
        /// What is being done: `saving`, `verifying`, `decompressing`, `uploading`, `downloading`,
        /// `loading` (a sharded or DCP load, one phase over its parts).
        public var phase: String
        /// Bytes done so far in this phase.
        public var completedBytes: Int
        /// Bytes this phase moves in all (0 when there are none).
        public var totalBytes: Int
        /// Whether this is the phase's last update: it is over (done, or stopped by an error).
        public var isFinished: Bool

        /// An update of `phase`.
        public init(phase: String, completedBytes: Int, totalBytes: Int, isFinished: Bool) {
            self.phase = phase
            self.completedBytes = completedBytes
            self.totalBytes = totalBytes
            self.isFinished = isFinished
        }

        /// The part done, from 0 to 1 (1 for a phase with nothing to do).
        public var fraction: Double {
            totalBytes > 0 ? min(1, Double(completedBytes) / Double(totalBytes)) : 1
        }
    }

    private struct Phase {
        var name = ""
        var totalBytes = 0
        var isFinished = false
    }

    private let onUpdate: @Sendable (Update) -> Void
    private let intervalNanoseconds: Int
    private let start = ContinuousClock.now
    /// The phase's name and total: set at its start, read only when an update is sent.
    private let phase = Mutex(Phase())
    private let completed = Atomic<Int>(0)
    /// When (nanoseconds after `start`) the next update may be sent.
    private let nextUpdate = Atomic<Int>(0)

    /// A reporter that hands updates to `onUpdate`, at most one per `interval` (100 ms, ten
    /// a second, by default) besides each phase's first and last.
    public init(interval: Duration = .milliseconds(100), onUpdate: @escaping @Sendable (Update) -> Void) {
        let (seconds, attoseconds) = interval.components
        intervalNanoseconds = max(0, Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        self.onUpdate = onUpdate
    }

    /// Starts a phase of `totalBytes` bytes; its first update is sent at once.
    public func begin(_ name: String, totalBytes: Int) {
        phase.withLock { $0 = Phase(name: name, totalBytes: max(0, totalBytes)) }
        completed.store(0, ordering: .relaxed)
        nextUpdate.store(0, ordering: .relaxed)
        send(completedBytes: 0, isFinished: false)
    }

    /// Counts `bytes` more done in the current phase; sends an update when the interval has
    /// passed since the last.
    public func advance(by bytes: Int) {
        let done = completed.add(bytes, ordering: .relaxed).newValue
        let now = elapsedNanoseconds()
        let next = nextUpdate.load(ordering: .relaxed)
        // Of the threads that find the interval over, the one that moves the deadline sends.
        guard now >= next,
            nextUpdate.compareExchange(expected: next, desired: now + intervalNanoseconds, ordering: .relaxed).exchanged
        else { return }
        send(completedBytes: done, isFinished: false)
    }

    /// Ends the current phase: its last update is sent. Ending a phase that has ended already
    /// does nothing, so code that began a phase may end it on every path (a `defer`) although
    /// a phase it started since (an upload at the end of a save) has ended it.
    public func finish() {
        let phase = phase.withLock { phase -> Phase? in
            guard !phase.isFinished else { return nil }
            phase.isFinished = true
            return phase
        }
        guard let phase else { return }
        onUpdate(Update(phase: phase.name, completedBytes: completed.load(ordering: .relaxed), totalBytes: phase.totalBytes, isFinished: true))
    }

    /// Runs `body` with this reporter as the one every operation it starts on this thread
    /// reports to (a task-local value: code that `body` runs on other threads reports only
    /// where the library hands the reporter on itself).
    public func reporting<Result>(_ body: () throws -> Result) rethrows -> Result {
        try Self.$current.withValue(self, operation: body)
    }

    /// Runs `body` with this reporter as the one every operation it starts reports to, from
    /// Swift concurrency: the `async` overloads that `body` awaits report to it (they hand it
    /// to the thread that does their work), as do the synchronous calls it makes.
    public func reporting<Result>(
        isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> Result
    ) async rethrows -> Result {
        try await Self.$current.withValue(self, operation: body, isolation: isolation)
    }

    /// The reporter of the operation running on this thread, if any.
    @TaskLocal package static var current: CheckpointProgress?

    /// Runs `body` reporting to `progress` when there is one, else to whatever reports already.
    static func reporting<Result>(to progress: CheckpointProgress?, _ body: () throws(CheckpointError) -> Result) throws(CheckpointError) -> Result {
        guard let progress, progress !== current else { return try body() }
        return try rethrowingCheckpointError { try progress.reporting { try body() } }
    }

    /// Runs `body` reporting to no one: for the steps of an operation that reports as one phase
    /// of its own (a sharded load), whose steps would each start a phase.
    static func withoutReporting<Result>(_ body: () throws(CheckpointError) -> Result) throws(CheckpointError) -> Result {
        guard current != nil else { return try body() }
        return try rethrowingCheckpointError { try $current.withValue(nil) { try body() } }
    }

    private func send(completedBytes: Int, isFinished: Bool) {
        let (name, total) = phase.withLock { ($0.name, $0.totalBytes) }
        onUpdate(Update(phase: name, completedBytes: completedBytes, totalBytes: total, isFinished: isFinished))
    }

    private func elapsedNanoseconds() -> Int {
        let (seconds, attoseconds) = start.duration(to: .now).components
        return Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    }
}
