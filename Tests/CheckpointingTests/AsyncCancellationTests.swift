import CheckpointingTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Checkpointing

/// Cancelling the task of an `async` overload: the work stops at its next boundary with
/// `.cancelled`, leaves what a failed save or load leaves (no temporary, the previous
/// checkpoint intact, the caller's state unchanged), and never touches the disk when the task
/// was cancelled before the call. The synchronous API is never cancelled.
@Suite struct AsyncCancellationTests {
    /// Cancels a task from its own work, on the pool's thread, at the first progress update
    /// `matches` accepts: the cancellation lands at a known point, and nothing depends on when
    /// the test's task gets a thread of the cooperative pool (other suites may hold them all).
    final class Pause: Sendable {
        private let matches: @Sendable (CheckpointProgress.Update) -> Bool
        private let fired = Atomic<Bool>(false)
        private let cancelTask = Mutex<(@Sendable () -> Void)?>(nil)
        private let armed = DispatchSemaphore(value: 0)
        private let seen = Mutex([CheckpointProgress.Update]())

        init(at matches: @escaping @Sendable (CheckpointProgress.Update) -> Bool) {
            self.matches = matches
        }

        /// Every update the reporter received.
        var updates: [CheckpointProgress.Update] { seen.withLock { $0 } }

        /// Whether the matching update came and the task was cancelled there.
        var didCancel: Bool { fired.load(ordering: .relaxed) }

        /// A reporter with no throttling that cancels the task at the matching update.
        func reporter() -> CheckpointProgress {
            CheckpointProgress(interval: .zero) { update in
                self.seen.withLock { $0.append(update) }
                guard self.matches(update), self.fired.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
                else { return }
                // The test hands the task over right after creating it.
                guard self.armed.wait(timeout: .now() + 600) == .success else { return }
                self.cancelTask.withLock { $0 }?()
            }
        }

        /// The task to cancel at the matching update.
        func cancel<Success, Failure>(_ task: Task<Success, Failure>) {
            cancelTask.withLock { $0 = { task.cancel() } }
            armed.signal()
        }
    }

    static func cancelledCode<Success>(_ task: Task<Success, any Error>) async -> CheckpointError.Code? {
        switch await task.result {
        case .success: return nil
        case .failure(let error): return (error as? CheckpointError)?.code
        }
    }

    @Test(arguments: ["a.safetensors", "a.pt", "a.safetensors.zst"])
    func aSaveCancelledMidwayLeavesThePreviousCheckpointAndNoTemporary(name: String) async throws {
        let folder = try TemporaryFolder()
        let path = folder.file(name)
        let previous = try ProgressTests.state(megabytes: 1)
        func synchronousSave() throws { try saveCheckpoint(previous, filename: path) }
        try synchronousSave()
        let previousBytes = try Data(contentsOf: URL(fileURLWithPath: path))

        let state = try ProgressTests.state(megabytes: 6)
        let pause = Pause { $0.phase == "saving" && $0.completedBytes > 0 && !$0.isFinished }
        let progress = pause.reporter()
        let task = Task { try await saveCheckpoint(state, filename: path, progress: progress) }
        pause.cancel(task)
        #expect(await Self.cancelledCode(task) == .cancelled)
        #expect(pause.didCancel)

        // Stopped midway: the phase ended short of its total.
        let last = try #require(pause.updates.last { $0.phase == "saving" })
        #expect(last.isFinished && last.completedBytes < last.totalBytes, "\(last)")
        #expect(try folderContents(folder.path) == [name], "no temporary is left")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == previousBytes)
        #expect(try await loadCheckpoint(path).model == previous.model)
    }

    /// The commit's own check: a cancellation that arrives after the last byte is written, but
    /// before the rename, still leaves the previous file.
    @Test func aSaveCancelledJustBeforeItsCommitIsNotCommitted() async throws {
        let folder = try TemporaryFolder()
        let path = folder.file("a.safetensors")
        let pause = Pause { $0.phase == "saving" && $0.isFinished }
        let progress = pause.reporter()
        let state = try ProgressTests.state(megabytes: 1)
        let task = Task { try await saveCheckpoint(state, filename: path, progress: progress) }
        pause.cancel(task)
        #expect(await Self.cancelledCode(task) == .cancelled)
        #expect(pause.didCancel)
        #expect(pause.updates.last?.fraction == 1, "every byte was written before the cancellation")
        #expect(try folderContents(folder.path).isEmpty)
    }

    @Test(arguments: [("a.safetensors", "verifying"), ("a.pt", "verifying"), ("a.safetensors.zst", "decompressing")])
    func aLoadCancelledMidwayLeavesTheStateUnchanged(name: String, phase: String) async throws {
        let folder = try TemporaryFolder()
        let path = folder.file(name)
        let saved = try ProgressTests.state(megabytes: 6)
        func synchronousSave() throws { try saveCheckpoint(saved, filename: path) }
        try synchronousSave()

        // The same keys and shapes, other values and position.
        var state = saved
        state.timestamp = Timestamp(epoch: 5, batch: 50)
        for name in ["a", "b"] {
            state.model[.string(name)] = .tensor(try Tensor(shape: [750_000], scalars: [Float](repeating: 0.5, count: 750_000)))
        }
        let before = state
        #expect(before.model != saved.model)
        let pause = Pause { $0.phase == phase && $0.completedBytes == 0 && !$0.isFinished }
        let progress = pause.reporter()
        let task = Task { [state] () async -> (state: TrainingState, error: CheckpointError?) in
            var loading = state
            do {
                _ = try await loadCheckpoint(path, into: &loading, progress: progress)
                return (loading, nil)
            } catch {
                return (loading, error as? CheckpointError)
            }
        }
        pause.cancel(task)
        let outcome = await task.value
        #expect(outcome.error?.code == .cancelled)
        #expect(pause.didCancel)
        #expect(outcome.state == before, "the caller's state is unchanged")
        let last = try #require(pause.updates.last { $0.phase == phase })
        #expect(last.isFinished && last.completedBytes < last.totalBytes, "\(last)")

        // Not cancelled, the same load changes it.
        _ = try await loadCheckpoint(path, into: &state)
        #expect(state.model == saved.model)
    }

    @Test func aTaskCancelledBeforeTheCallTouchesNothing() async throws {
        let folder = try TemporaryFolder()
        let state = try ProgressTests.state(megabytes: 1)
        let target = folder.file("sub/a.safetensors")
        let save = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await saveCheckpoint(state, filename: target)
        }
        #expect(await Self.cancelledCode(save) == .cancelled)
        #expect(!fileExists(folder.file("sub")), "not even the folder was created")

        // A load of a file that does not exist says cancelled, not missing: it never looked.
        let missing = folder.file("missing.safetensors")
        let load = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await loadCheckpoint(missing)
        }
        #expect(await Self.cancelledCode(load) == .cancelled)
        let open = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await CheckpointFile.open(missing)
        }
        #expect(await Self.cancelledCode(open) == .cancelled)
        let error = try #require(await open.result.failure as? CheckpointError)
        #expect(error.path == missing)
        #expect(error.description.contains("cancelled"))
    }

    @Test func theSynchronousAPIIsNeverCancelled() async throws {
        let folder = try TemporaryFolder()
        let state = try ProgressTests.state(megabytes: 1)
        let path = folder.file("a.safetensors.zst")
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            #expect(Task.isCancelled)
            func synchronousRoundTrip() throws -> TrainingState {
                try saveCheckpoint(state, filename: path)
                let file = try CheckpointFile.open(path)
                try file.verify()
                return try loadCheckpoint(path)
            }
            return try synchronousRoundTrip()
        }
        #expect(try await task.value.model == state.model)
    }

    @Test func aForegroundSaverSaveCancelledLeavesTheLastCheckpointKept() async throws {
        let folder = try TemporaryFolder()
        let pause = Pause { $0.phase == "saving" && $0.completedBytes > 0 && !$0.isFinished }
        let options = CheckpointSaver.Options(
            folder: folder.path, filename: "ba{batch}.safetensors", latestFilename: "latest", saveInterval: "1ba",
            progress: pause.reporter())
        let saver = try CheckpointSaver(options: options)
        var state = try ProgressTests.state(megabytes: 1)
        state.timestamp = Timestamp(epoch: 0, batch: 0)
        try await saver.fitStart(state)
        // The pause is armed once: the first save pauses and is cancelled...
        state.timestamp = Timestamp(epoch: 0, batch: 1)
        let first = state
        // The test's task waits for this one: one task uses the saver at a time.
        nonisolated(unsafe) let shared = saver
        let task = Task { try await shared.batchEnd(first) }
        pause.cancel(task)
        #expect(await Self.cancelledCode(task) == .cancelled)
        #expect(pause.didCancel)
        #expect(try folderContents(folder.path).filter { $0.hasPrefix("ba") || $0.hasPrefix(".ba") }.isEmpty)
        #expect(try saver.keptCheckpoints.isEmpty)

        // ...and the next one commits, records and points to its checkpoint.
        state.timestamp = Timestamp(epoch: 0, batch: 2)
        try await saver.batchEnd(state)
        #expect(try saver.keptCheckpoints == [folder.file("ba2.safetensors")])
        #expect(try await loadCheckpoint(folder.file("latest")).model == state.model)
        try await saver.close()
    }

    @Test func verifyingShardsStopsWhenCancelled() async throws {
        let folder = try TemporaryFolder()
        let state = try ProgressTests.state(megabytes: 2)
        func synchronousSave() throws -> String {
            try saveCheckpoint(state, filename: folder.file("ep1-rank{rank}"), sharding: Sharding())[0]
        }
        let shard = try synchronousSave()
        let manifestPath = ShardManifest.path(forRankZeroShard: shard)
        let manifest = try ShardManifest.read(manifestPath)
        let pause = Pause { $0.phase == "verifying" && $0.completedBytes == 0 && !$0.isFinished }
        let progress = pause.reporter()
        let task = Task { try await progress.reporting { try await manifest.verifyShards(manifestPath: manifestPath) } }
        pause.cancel(task)
        #expect(await Self.cancelledCode(task) == .cancelled)
        #expect(pause.didCancel)
        // Not cancelled, it checks every shard.
        try await manifest.verifyShards(manifestPath: manifestPath)
    }

    /// One process whose broadcast, the collective a save makes once rank 0 has committed,
    /// first cancels the operation in progress: a cancellation that lands after the commit.
    struct CancelAfterCommitGroup: ProcessGroup {
        var rank: Int { 0 }
        var worldSize: Int { 1 }
        var localRank: Int { 0 }
        var localWorldSize: Int { 1 }
        var nodeRank: Int { 0 }
        var collectiveTimeout: Duration { .seconds(60) }
        func barrier(timeout: Duration) {}
        func allGather(_ bytes: [UInt8], timeout: Duration) -> [[UInt8]] { [bytes] }
        func broadcast(_ bytes: [UInt8], from root: Int, timeout: Duration) -> [UInt8] {
            CancellationFlag.current?.cancel()
            return bytes
        }
    }

    /// A save cancelled after its commit succeeds, and the saver records it (the kept list,
    /// the latest pointer: writes that follow the commit and are not cut short).
    @Test func aCommittedSaveIsNeverReportedAsCancelled() async throws {
        let folder = try TemporaryFolder()
        let state = try ProgressTests.state(megabytes: 1)
        let path = try await saveCheckpoint(state, filename: folder.file("a.safetensors"), processGroup: CancelAfterCommitGroup())[0]
        #expect(try await loadCheckpoint(path).model == state.model)

        let saver = try CheckpointSaver(options: .init(
            folder: folder.file("run"), filename: "ba{batch}.safetensors", latestFilename: "latest", saveInterval: "1ba",
            processGroup: CancelAfterCommitGroup()))
        var batch = state
        func synchronousStart() throws { try saver.fitStart(batch) }
        try synchronousStart()
        batch.timestamp = Timestamp(epoch: 0, batch: 1)
        try await saver.batchEnd(batch)
        #expect(try saver.keptCheckpoints == [folder.file("run/ba1.safetensors")])
        #expect(try await loadCheckpoint(folder.file("run/latest")).model == state.model)
        #expect(try folderContents(folder.file("run")).allSatisfy { !$0.contains(".partial-") })
    }

    /// A sharded save cancelled on one rank fails on every rank, with that rank's
    /// cancellation, and commits nothing: no manifest, no temporary.
    @Test func aShardedSaveCancelledOnOneRankCommitsNothing() throws {
        let folder = try TemporaryFolder()
        let tree = try ProgressTests.state(megabytes: 1).tree
        let template = folder.file("ep1-rank{rank}")
        let outcomes = ThreadWorld.run(size: 2) { group in
            let (part, sharding) = try ShardPlan.splitFirstDimension.apply(to: tree, rank: group.rank, worldSize: 2)
            let flag = CancellationFlag()
            if group.rank == 1 { flag.cancel() }
            return try CancellationFlag.$current.withValue(flag) {
                try saveCheckpoint(tree: part, filename: template, sharding: sharding, processGroup: group)
            }
        }
        for (rank, outcome) in outcomes.enumerated() {
            guard case .failure(let error) = outcome, let error = error as? CheckpointError else {
                Issue.record("rank \(rank) did not fail: \(outcome)")
                continue
            }
            #expect(error.code == .cancelled && error.rank == (rank == 1 ? nil : 1), "rank \(rank): \(error)")
        }
        let left = try folderContents(folder.path)
        #expect(!left.contains { $0.hasSuffix(ShardManifest.suffix) || $0.contains(".partial-") }, "\(left)")
    }

    @Test func handlersRunOnceOnCancellationAndAtOnceWhenAlreadyCancelled() {
        let flag = CancellationFlag()
        let runs = Atomic<Int>(0)
        flag.onCancel { runs.add(1, ordering: .relaxed) }
        let removed = flag.onCancel { runs.add(100, ordering: .relaxed) }
        removed.remove()
        #expect(!flag.isCancelled)
        #expect(throws: Never.self) { try flag.check("saving", path: "x") }
        flag.cancel()
        flag.cancel()
        #expect(runs.load(ordering: .relaxed) == 1)
        flag.onCancel { runs.add(10, ordering: .relaxed) }
        #expect(runs.load(ordering: .relaxed) == 11)
        #expect(throws: CheckpointError.self) { try flag.check("saving", path: "x") }
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
