import CheckpointingTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Checkpointing

/// The `async` overloads: they round-trip as the synchronous calls do, run the blocking work
/// on the library's own threads (never the cooperative pool's), and throw typed errors.
@Suite struct AsyncAPITests {
    /// A state whose tensors hold bit patterns a lossy path would change: a NaN with a
    /// payload, a negative zero, subnormals.
    static func state(batch: Int = 3) throws -> TrainingState {
        var state = TrainingState(runName: "async-run")
        let oddBits: [UInt32] = [0x7FC0_1234, 0x8000_0000, 0x0000_0001, 0x3F80_0000, UInt32(batch)]
        let bytes = oddBits.flatMap { bits in withUnsafeBytes(of: bits.littleEndian) { Array($0) } }
        state.model["w"] = .tensor(try Tensor(dtype: .float32, shape: [5], bytes: bytes))
        state.model["b"] = .tensor(try Tensor(shape: [2, 2], scalars: [Int64.min, -1, 0, Int64.max]))
        state.optimizers["SGD"] = .dict(["lr": .float(0.125), "steps": .int(batch)])
        state.timestamp = Timestamp(epoch: 1, batch: batch, sample: batch * 4)
        return state
    }

    @Test func saveAndLoadRoundTripBitExactly() async throws {
        let folder = try TemporaryFolder()
        let original = try Self.state()
        let paths = try await saveCheckpoint(original, filename: folder.file("ba{batch}.safetensors"))
        #expect(paths == [folder.file("ba3.safetensors")])

        var resumed = TrainingState(model: original.model, runName: "async-run")
        let result = try await loadCheckpoint(paths[0], into: &resumed)
        #expect(result.path == paths[0])
        #expect(result.missingKeys.isEmpty && result.unexpectedKeys.isEmpty)
        #expect(resumed.model == original.model)
        #expect(resumed.optimizers == original.optimizers)
        #expect(resumed.timestamp == original.timestamp)

        let fresh = try await loadCheckpoint(paths[0])
        #expect(fresh.model == original.model)
        #expect(fresh.optimizers == original.optimizers)

        let tree = try await loadCheckpointTree(paths[0])
        let copied = try await saveCheckpoint(tree: tree.tree, filename: folder.file("copy.safetensors"))
        #expect(try await loadCheckpointTree(copied[0]).tree == tree.tree)
        // The async tree save writes what the synchronous one writes, byte for byte.
        func synchronousSave() throws -> [String] { try saveCheckpoint(tree: tree.tree, filename: folder.file("sync.safetensors")) }
        let synchronous = try synchronousSave()
        #expect(try Data(contentsOf: URL(fileURLWithPath: copied[0])) == Data(contentsOf: URL(fileURLWithPath: synchronous[0])))

        let file = try await CheckpointFile.open(paths[0])
        try await file.verify()
        #expect(file.tree == tree.tree)
        let limited = try await CheckpointFile.open(paths[0], limits: ReadingLimits())
        #expect(limited.tree == tree.tree)
    }

    @Test func blockingWorkRunsOnThePoolsThreads() async throws {
        let folder = try TemporaryFolder()
        // The check can fail: the test itself runs on the cooperative pool.
        #expect(!BlockingWorkPool.shared.ownsCurrentThread)
        let onPool = Mutex<[String: Bool]>([:])
        let progress = CheckpointProgress { update in
            let owned = BlockingWorkPool.shared.ownsCurrentThread
            onPool.withLock { seen in if seen[update.phase] == nil { seen[update.phase] = owned } }
        }
        let paths = try await saveCheckpoint(try Self.state(), filename: folder.file("a.safetensors"), progress: progress)
        _ = try await loadCheckpoint(paths[0], progress: progress)
        let phases = onPool.withLock { $0 }
        #expect(phases["saving"] == true)
        #expect(phases["verifying"] == true)
    }

    /// More saves at once than the cooperative pool has threads, each blocked (in its progress
    /// callback) until a task on the cooperative pool releases it: were the saves run on the
    /// cooperative pool, nothing could run the release and every wait would time out.
    @Test func blockedSavesLeaveTheCooperativePoolFree() async throws {
        let folder = try TemporaryFolder()
        let saves = 2 * max(2, ProcessInfo.processInfo.activeProcessorCount) + 2
        let gate = DispatchSemaphore(value: 0)
        let entered = Atomic<Int>(0)
        let timedOut = Atomic<Int>(0)
        let state = try Self.state()
        try await withThrowingTaskGroup(of: [String].self) { group in
            for index in 0..<saves {
                let progress = CheckpointProgress { update in
                    guard update.phase == "saving", update.completedBytes == 0, !update.isFinished else { return }
                    entered.add(1, ordering: .relaxed)
                    if gate.wait(timeout: .now() + 60) == .timedOut { timedOut.add(1, ordering: .relaxed) }
                }
                let path = folder.file("s\(index).safetensors")
                group.addTask { try await saveCheckpoint(state, filename: path, progress: progress) }
            }
            // Runs on the cooperative pool while the pool's threads are all blocked. No deadline
            // here: in the whole suite other tests hold the cooperative threads for long spells;
            // a regression shows as the saves' waits timing out.
            while entered.load(ordering: .relaxed) < 2 {
                try await Task.sleep(for: .milliseconds(5))
            }
            for _ in 0..<saves { gate.signal() }
            var saved = 0
            for try await paths in group { saved += paths.count }
            #expect(saved == saves)
        }
        #expect(timedOut.load(ordering: .relaxed) == 0)
        #expect(entered.load(ordering: .relaxed) == saves)
        for index in 0..<saves {
            #expect(try await loadCheckpoint(folder.file("s\(index).safetensors")).model == state.model)
        }
    }

    @Test func errorsArriveTyped() async throws {
        let folder = try TemporaryFolder()
        do {
            _ = try await loadCheckpoint(folder.file("missing.safetensors"))
            Issue.record("a missing checkpoint loaded")
        } catch {
            let typed: CheckpointError = error
            #expect(typed.code == .notFound)
        }
        try Data("not a checkpoint at all, just text".utf8).write(to: URL(fileURLWithPath: folder.file("junk.safetensors")))
        // The same error as the synchronous call's, code and message.
        func synchronousOpen() -> CheckpointError? {
            do { _ = try CheckpointFile.open(folder.file("junk.safetensors")) } catch { return error }
            return nil
        }
        let expected = try #require(synchronousOpen())
        do {
            _ = try await CheckpointFile.open(folder.file("junk.safetensors"))
            Issue.record("a text file opened as a checkpoint")
        } catch {
            #expect(error.code == expected.code)
            #expect(error.description == expected.description)
        }
        // A strict load into a state with another model is refused, and the state is untouched.
        let paths = try await saveCheckpoint(try Self.state(), filename: folder.file("a.safetensors"))
        var other = TrainingState(runName: "async-run")
        other.model["other"] = .tensor(try Tensor(shape: [1], scalars: [Float(1)]))
        let before = other
        await #expect(throws: CheckpointError.self) { try await loadCheckpoint(paths[0], into: &other) }
        #expect(other == before)
    }

    @Test func saverEventsAndAutoresume() async throws {
        let folder = try TemporaryFolder()
        let options = CheckpointSaver.Options(
            folder: folder.path, filename: "ba{batch}.safetensors", latestFilename: nil, saveInterval: "2ba")
        let saver = try CheckpointSaver(options: options)
        try await saver.fitStart(try Self.state(batch: 0))
        for batch in 1...5 {
            try await saver.batchEnd(try Self.state(batch: batch))
        }
        try await saver.epochEnd(try Self.state(batch: 5))
        try await saver.fitEnd(try Self.state(batch: 5))
        #expect(try folderContents(folder.path).filter { $0.hasPrefix("ba") }.sorted() == ["ba2.safetensors", "ba4.safetensors", "ba5.safetensors"])

        let resumer = try CheckpointSaver(options: options)
        var resumed = TrainingState(model: try Self.state().model, runName: "async-run")
        let result = try await resumer.autoresume(into: &resumed)
        #expect(result?.path == folder.file("ba5.safetensors"))
        #expect(resumed.model == (try Self.state(batch: 5)).model)
        #expect(resumed.timestamp.batch == 5)
    }

    /// Flips one byte of a file's data, `fromEnd` bytes before its end.
    static func damage(_ path: String, fromEnd: Int) throws {
        var bytes = try readBytes(path)
        bytes[bytes.count - fromEnd] ^= 0xFF
        try writeBytes(bytes, to: path)
    }

    /// The error a synchronous call throws, to compare with the `async` overload's.
    static func syncError(_ body: () throws(CheckpointError) -> Void) -> CheckpointError? {
        do { try body() } catch { return error }
        return nil
    }

    @Test func distributedCheckpointsOpenAndVerify() async throws {
        let folder = try TemporaryFolder()
        let state = try Self.state()
        let saved = try await saveCheckpoint(state, filename: folder.file("dcp"), format: .distributedCheckpoint)[0]
        let opened = try await DistributedCheckpoint.open(saved)
        func synchronousOpen() throws -> DistributedCheckpoint { try DistributedCheckpoint.open(saved) }
        let synchronous = try synchronousOpen()
        #expect(opened.tensors == synchronous.tensors && opened.files == synchronous.files)
        try await opened.verify()

        // A damaged record: the same error as the synchronous check's.
        let data = try #require(opened.files.first)
        try Self.damage(FilePaths.join(opened.folder, data.name), fromEnd: 200)
        let expected = try #require(Self.syncError { () throws(CheckpointError) in try synchronous.verify() })
        do {
            try await opened.verify()
            Issue.record("a damaged DCP checkpoint verified")
        } catch {
            #expect(error.code == expected.code && error.description == expected.description)
        }
        do {
            _ = try await DistributedCheckpoint.open(folder.file("missing"))
            Issue.record("a missing DCP folder opened")
        } catch {
            #expect(error.code == .notFound)
        }
    }

    @Test func shardedCheckpointsVerify() async throws {
        let folder = try TemporaryFolder()
        let shard = try await saveCheckpoint(try Self.state(), filename: folder.file("ep1-rank{rank}"), sharding: Sharding())[0]
        let manifestPath = ShardManifest.path(forRankZeroShard: shard)
        let manifest = try ShardManifest.read(manifestPath)
        try await manifest.verifyShards(manifestPath: manifestPath)
        try await manifest.verifyShards(manifestPath: manifestPath, limits: ReadingLimits())

        // The last tensor's bytes: the digest of the header still matches, the checksum not.
        try Self.damage(shard, fromEnd: 1100)
        let expected = try #require(Self.syncError { () throws(CheckpointError) in try manifest.verifyShards(manifestPath: manifestPath) })
        do {
            try await manifest.verifyShards(manifestPath: manifestPath)
            Issue.record("a damaged shard verified")
        } catch {
            #expect(error.code == expected.code && error.description == expected.description)
        }
    }

    @Test func theSaverWaitsAndClosesFromSwiftConcurrency() async throws {
        let folder = try TemporaryFolder()
        let options = CheckpointSaver.Options(
            folder: folder.path, filename: "ba{batch}.safetensors", latestFilename: nil, saveInterval: "1ba", overwrite: true,
            asynchronous: true)
        let saver = try CheckpointSaver(options: options)
        try await saver.fitStart(try Self.state(batch: 0))
        try await saver.batchEnd(try Self.state(batch: 1))
        try await saver.waitForPendingSave()
        #expect(try await loadCheckpoint(folder.file("ba1.safetensors")).model == (try Self.state(batch: 1)).model)

        // A background save that fails (a folder stands where its file goes): the wait
        // throws its error, as the synchronous wait would, and only once.
        try FileManager.default.createDirectory(atPath: folder.file("ba2.safetensors/x"), withIntermediateDirectories: true)
        try await saver.batchEnd(try Self.state(batch: 2))
        do {
            try await saver.waitForPendingSave()
            Issue.record("the failed background save was not reported")
        } catch {
            #expect(error.code == .io, "\(error)")
        }
        try await saver.waitForPendingSave()

        // Closing waits for the save in flight and throws its error too.
        try await saver.batchEnd(try Self.state(batch: 3))
        try await saver.close()
        #expect(fileExists(folder.file("ba3.safetensors")))
        try FileManager.default.createDirectory(atPath: folder.file("ba4.safetensors/x"), withIntermediateDirectories: true)
        try await saver.batchEnd(try Self.state(batch: 4))
        await #expect(throws: CheckpointError.self) { try await saver.close() }
    }
}
