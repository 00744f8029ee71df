import Checkpointing
import CheckpointingTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing

/// ``CheckpointProgress``: what the long operations report (every byte they move, in phases
/// with the right totals) and how often (throttled, first and last update always).
@Suite struct ProgressTests {
    /// The updates a reporter sent, from whichever threads sent them.
    final class Recorder: Sendable {
        private let storage = Mutex([CheckpointProgress.Update]())

        var updates: [CheckpointProgress.Update] { storage.withLock { $0 } }

        /// A reporter that records into this recorder, with no throttling unless `interval` says.
        func reporter(interval: Duration = .zero) -> CheckpointProgress {
            CheckpointProgress(interval: interval) { update in self.storage.withLock { $0.append(update) } }
        }

        /// The last update of each phase, in the order the phases ran.
        var finished: [CheckpointProgress.Update] { updates.filter(\.isFinished) }
    }

    /// A state of `megabytes` MB of float32 weights, in two tensors, and some other values.
    static func state(megabytes: Int) throws -> TrainingState {
        var random = SplitMix64(seed: 7)
        let count = megabytes * 250_000 / 2
        var state = TrainingState(runName: "progress")
        for name in ["a", "b"] {
            state.model[.string(name)] = .tensor(try Tensor(shape: [count], scalars: (0..<count).map { _ in Float(random.next() % 1000) / 7 }))
        }
        state.timestamp = Timestamp(epoch: 1, batch: 2)
        return state
    }

    static func tensorBytes(_ state: TrainingState) -> Int { state.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount } }

    static func size(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
    }

    @Test func updatesAreThrottledButTheFirstAndLastAlwaysGoAndNoByteIsLost() {
        let recorder = Recorder()
        let progress = recorder.reporter(interval: .seconds(3600))
        progress.begin("moving", totalBytes: 4000)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<1000 { progress.advance(by: 1) }
        }
        progress.finish()
        let updates = recorder.updates
        // The start, the first bytes (the interval starts then), the end: nothing between.
        #expect(updates.count == 3, "\(updates)")
        #expect(updates.first == .init(phase: "moving", completedBytes: 0, totalBytes: 4000, isFinished: false))
        #expect(updates.last == .init(phase: "moving", completedBytes: 4000, totalBytes: 4000, isFinished: true))
        #expect(updates.last?.fraction == 1)
    }

    @Test func anUnthrottledReporterSeesEveryAdvanceInOrder() {
        let recorder = Recorder()
        let progress = recorder.reporter()
        progress.begin("moving", totalBytes: 30)
        for _ in 0..<3 { progress.advance(by: 10) }
        progress.finish()
        #expect(recorder.updates.map(\.completedBytes) == [0, 10, 20, 30, 30])
        #expect(recorder.updates.map(\.isFinished) == [false, false, false, false, true])
    }

    /// A save to an object store ends its `saving` phase and starts `uploading`; the save's
    /// own end (on every path) then ends nothing more.
    @Test func endingAPhaseTwiceSendsOneLastUpdate() {
        let recorder = Recorder()
        let progress = recorder.reporter()
        progress.begin("saving", totalBytes: 10)
        progress.advance(by: 10)
        progress.finish()
        progress.begin("uploading", totalBytes: 10)
        progress.advance(by: 10)
        progress.finish()
        progress.finish()
        #expect(recorder.finished.map(\.phase) == ["saving", "uploading"])
    }

    @Test func aNativeSaveReportsEveryByteOfTheFile() throws {
        try withTemporaryFolder { folder in
            let recorder = Recorder()
            let state = try Self.state(megabytes: 3)
            let path = try saveCheckpoint(state, filename: folder + "/a.safetensors", progress: recorder.reporter())[0]
            let size = try Self.size(path)
            #expect(recorder.finished == [.init(phase: "saving", completedBytes: size, totalBytes: size, isFinished: true)])
            // Reported as the bytes go: more than the start and the end.
            #expect(recorder.updates.filter { $0.completedBytes > 0 && $0.completedBytes < size }.count >= 2)
            let completed = recorder.updates.map(\.completedBytes)
            #expect(completed == completed.sorted(), "the count never goes back")
        }
    }

    @Test func aCompressedLoadReportsDecompressingThenVerifyingAndACompressedSaveCountsWhatGoesIn() throws {
        try withTemporaryFolder { folder in
            let state = try Self.state(megabytes: 3)
            let plain = try saveCheckpoint(state, filename: folder + "/plain.safetensors")[0]
            let saving = Recorder()
            let path = try saveCheckpoint(state, filename: folder + "/a.safetensors.zst", progress: saving.reporter())[0]
            // The bytes fed to the compressor: the uncompressed file's.
            let plainSize = try Self.size(plain)
            #expect(saving.finished == [.init(phase: "saving", completedBytes: plainSize, totalBytes: plainSize, isFinished: true)])

            let loading = Recorder()
            var loaded = TrainingState(model: state.model)
            try loadCheckpoint(path, into: &loaded, progress: loading.reporter())
            let compressed = try Self.size(path)
            let tensors = Self.tensorBytes(state)
            #expect(loading.finished == [
                .init(phase: "decompressing", completedBytes: compressed, totalBytes: compressed, isFinished: true),
                .init(phase: "verifying", completedBytes: tensors, totalBytes: tensors, isFinished: true),
            ])
        }
    }

    @Test func aTorchFileIsVerifiedRecordByRecord() throws {
        try withTemporaryFolder { folder in
            let state = try Self.state(megabytes: 2)
            let path = try saveCheckpoint(state, filename: folder + "/a.pt")[0]
            let recorder = Recorder()
            try CheckpointFile.open(path).verify(progress: recorder.reporter())
            let last = try #require(recorder.finished.last)
            #expect(recorder.finished.count == 1 && last.phase == "verifying")
            #expect(last.totalBytes == Self.tensorBytes(state) && last.fraction == 1, "\(last)")
            #expect(recorder.updates.contains { $0.completedBytes > 0 && !$0.isFinished }, "the CRC pass reports as it reads")
        }
    }

    @Test func aHuggingFaceSaveIsOnePhaseOverEveryShard() throws {
        try withTemporaryFolder { folder in
            let state = try Self.state(megabytes: 2)
            let recorder = Recorder()
            let index = try saveCheckpoint(
                state, filename: folder + "/hf", format: .huggingFaceSharded(maxShardSize: 1_100_000), progress: recorder.reporter())[0]
            let shards = try FileManager.default.contentsOfDirectory(atPath: folder + "/hf").filter { $0.hasSuffix(".safetensors") }
            #expect(shards.count == 2, "\(index)")
            let total = try shards.reduce(0) { $0 + (try Self.size(folder + "/hf/" + $1)) }
            #expect(recorder.finished == [.init(phase: "saving", completedBytes: total, totalBytes: total, isFinished: true)])
        }
    }

    @Test func reportingCoversWhatRunsInsideItAndNothingElse() throws {
        try withTemporaryFolder { folder in
            let state = try Self.state(megabytes: 1)
            let recorder = Recorder()
            let progress = recorder.reporter()
            let path = try progress.reporting { try saveCheckpoint(state, filename: folder + "/a.safetensors")[0] }
            try progress.reporting { try CheckpointFile.open(path).verify() }
            #expect(recorder.finished.map(\.phase) == ["saving", "verifying"])
            try saveCheckpoint(state, filename: folder + "/b.safetensors")
            try CheckpointFile.open(path).verify()
            #expect(recorder.finished.count == 2, "nothing reports outside the scope")
        }
    }

    /// The saver's own reporter gets every save, those it makes in the background included,
    /// reported from the saver's thread.
    @Test func aSaverReportsItsBackgroundSavesToItsReporter() throws {
        try withTemporaryFolder { folder in
            let caller = ObjectIdentifier(Thread.current)
            let fromCaller = Atomic<Int>(0)
            let updates = Mutex([CheckpointProgress.Update]())
            let progress = CheckpointProgress(interval: .zero) { update in
                if ObjectIdentifier(Thread.current) == caller { fromCaller.add(1, ordering: .relaxed) }
                updates.withLock { $0.append(update) }
            }
            let saver = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}.safetensors", latestFilename: nil, saveInterval: "1ba", asynchronous: true,
                progress: progress))
            var state = try Self.state(megabytes: 1)
            state.timestamp = Timestamp()
            try saver.fitStart(state)
            for batch in 1...2 {
                state.timestamp = Timestamp(epoch: 0, batch: batch)
                try saver.batchEnd(state)
            }
            try saver.close()
            let sizes = try [1, 2].map { try Self.size(folder + "/ba\($0).safetensors") }
            let finished = updates.withLock { $0 }.filter(\.isFinished)
            #expect(finished == sizes.map { .init(phase: "saving", completedBytes: $0, totalBytes: $0, isFinished: true) })
            #expect(fromCaller.load(ordering: .relaxed) == 0, "the saves ran, and reported, on the saver's thread")
        }
    }

    /// A reporter in scope at the event is handed to the background save that event starts,
    /// in place of the saver's own; a save outside the scope reports to the saver's.
    @Test func theReporterInScopeAtAnEventFollowsItsBackgroundSave() throws {
        try withTemporaryFolder { folder in
            let saverRecorder = Recorder()
            let scoped = Recorder()
            let saver = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}.safetensors", latestFilename: nil, saveInterval: "1ba", asynchronous: true,
                progress: saverRecorder.reporter()))
            var state = try Self.state(megabytes: 1)
            try saver.fitStart(state)
            state.timestamp = Timestamp(epoch: 0, batch: 1)
            try scoped.reporter().reporting { try saver.batchEnd(state) }
            try saver.waitForPendingSave()
            state.timestamp = Timestamp(epoch: 0, batch: 2)
            try saver.batchEnd(state)
            try saver.close()
            let first = try Self.size(folder + "/ba1.safetensors")
            let second = try Self.size(folder + "/ba2.safetensors")
            #expect(scoped.finished == [.init(phase: "saving", completedBytes: first, totalBytes: first, isFinished: true)])
            #expect(saverRecorder.finished == [.init(phase: "saving", completedBytes: second, totalBytes: second, isFinished: true)])
        }
    }

    /// From Swift concurrency: the reporter in scope in the task reaches the work the `async`
    /// overloads run on the library's threads.
    @Test func anAsyncReportingScopeReachesTheAsyncOverloads() async throws {
        let folder = try TemporaryFolder()
        let recorder = Recorder()
        let state = try Self.state(megabytes: 1)
        let path = folder.file("a.safetensors")
        try await recorder.reporter().reporting {
            _ = try await saveCheckpoint(state, filename: path)
            _ = try await loadCheckpoint(path)
        }
        let size = try Self.size(path)
        let tensors = Self.tensorBytes(state)
        #expect(recorder.finished == [
            .init(phase: "saving", completedBytes: size, totalBytes: size, isFinished: true),
            .init(phase: "verifying", completedBytes: tensors, totalBytes: tensors, isFinished: true),
        ])
        _ = try await loadCheckpoint(path)
        #expect(recorder.finished.count == 2, "nothing reports outside the scope")
    }

    /// A sharded save reports, on each rank, its one shard as one phase; a load on fewer ranks
    /// reads several shards (compressed: each is decompressed whole) as one `loading` phase
    /// over the bytes of the pieces it reads, with no phase of any shard's own.
    @Test func aShardedSaveAndLoadAreOnePhaseOnARank() throws {
        try withTemporaryFolder { folder in
            let state = try Self.state(megabytes: 2)
            let tree = state.tree
            let recorders = [Recorder(), Recorder()]
            _ = try ThreadWorld.run(size: 2) { group in
                let (part, sharding) = try ShardPlan.splitFirstDimension.apply(to: tree, rank: group.rank, worldSize: 2)
                return try saveCheckpoint(
                    tree: part, filename: folder + "/ep{epoch}-rank{rank}.safetensors.zst", runName: state.runName,
                    timestamp: state.timestamp, sharding: sharding, processGroup: group, progress: recorders[group.rank].reporter())
            }.map { try $0.get() }
            for recorder in recorders {
                let finished = recorder.finished
                #expect(finished.map(\.phase) == ["saving"] && finished[0].fraction == 1, "\(finished)")
            }

            let loading = Recorder()
            let manifest = ShardManifest.path(forRankZeroShard: folder + "/ep1-rank0.safetensors.tar.zst")
            let loaded = try loadCheckpoint(manifest, progress: loading.reporter())
            #expect(loaded.model == state.model)
            let tensors = Self.tensorBytes(state)
            #expect(Set(loading.updates.map(\.phase)) == ["loading"], "no shard reports a phase of its own")
            #expect(loading.finished == [.init(phase: "loading", completedBytes: tensors, totalBytes: tensors, isFinished: true)])
            let completed = loading.updates.map(\.completedBytes)
            #expect(completed == completed.sorted() && completed.count > 3, "counted piece by piece: \(completed)")
        }
    }

    /// A DCP load is one `loading` phase over the archives the rank reads.
    @Test func aDistributedCheckpointLoadIsOnePhase() throws {
        try withTemporaryFolder { folder in
            let state = try Self.state(megabytes: 2)
            let path = try saveCheckpoint(state, filename: folder + "/dcp", format: .distributedCheckpoint)[0]
            let recorder = Recorder()
            let loaded = try loadCheckpoint(path, progress: recorder.reporter())
            #expect(loaded.model == state.model)
            #expect(Set(recorder.updates.map(\.phase)) == ["loading"])
            let last = try #require(recorder.finished.last)
            #expect(recorder.finished.count == 1 && last.fraction == 1)
            // Every archive: the tensors' bytes and the records around them.
            #expect(last.totalBytes > Self.tensorBytes(state), "\(last)")
        }
    }
}
