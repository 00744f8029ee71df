import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// CheckpointSaver: Composer's interval rules, retention, pointers, overwrite checks,
/// autoresume with fallback, and asynchronous snapshots.
@Suite struct SaverTests {
    /// A tiny state at a given point of training.
    static func state(batch: Int, epoch: Int = 0, sample: Int? = nil, token: Int = 0, seconds: Double = 0, value: Float = 0) -> TrainingState {
        var state = TrainingState(runName: "run")
        state.model["w"] = .tensor(try! Tensor(shape: [2], scalars: [value, Float(batch)]))
        state.timestamp = Timestamp(
            epoch: epoch, batch: batch, sample: sample ?? batch * 4, token: token, totalWct: .seconds(seconds))
        return state
    }

    /// Runs `batches` batches of `perEpoch` each through a saver's events, then the fit end;
    /// returns the batches at which a checkpoint was written.
    static func savedBatches(
        interval: SaveInterval, batches: Int, perEpoch: Int = 1000, maxDuration: TrainingTime? = nil,
        tokensPerBatch: Int = 0, secondsPerBatch: Double = 0
    ) throws -> [Int] {
        try withTemporaryFolder { folder in
            let saver = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}", latestFilename: nil, saveInterval: interval,
                maxDuration: maxDuration, saveOnTermination: false))
            try saver.fitStart(state(batch: 0))
            var epoch = 0
            for batch in 1...batches {
                let now = state(
                    batch: batch, epoch: epoch, token: batch * tokensPerBatch, seconds: Double(batch) * secondsPerBatch)
                try saver.batchEnd(now)
                if batch % perEpoch == 0 {
                    epoch += 1
                    try saver.epochEnd(state(batch: batch, epoch: epoch, token: batch * tokensPerBatch, seconds: Double(batch) * secondsPerBatch))
                }
            }
            try saver.fitEnd(state(batch: batches, epoch: epoch, token: batches * tokensPerBatch, seconds: Double(batches) * secondsPerBatch))
            return try folderContents(folder).filter { $0.hasPrefix("ba") }.map { Int($0.dropFirst(2))! }.sorted()
        }
    }

    @Test func batchIntervalSavesAtMultiplesAndOnceAtTheEnd() throws {
        #expect(try Self.savedBatches(interval: "2ba", batches: 6) == [2, 4, 6])  // no double save at 6
        #expect(try Self.savedBatches(interval: "2ba", batches: 7) == [2, 4, 6, 7])  // exactly one final save
    }

    @Test func epochIntervalSavesAtEachEpochEnd() throws {
        #expect(try Self.savedBatches(interval: "1ep", batches: 9, perEpoch: 3) == [3, 6, 9])
        #expect(try Self.savedBatches(interval: 2, batches: 9, perEpoch: 3) == [6, 9])  // an integer is epochs
        #expect(try Self.savedBatches(interval: "1ep", batches: 8, perEpoch: 3) == [3, 6, 8])
    }

    @Test func sampleTokenSecondAndDurationIntervals() throws {
        // 4 samples per batch: 10sp is crossed at batches 3 (12), 5 (20), 8 (32), 10 (40).
        #expect(try Self.savedBatches(interval: "10sp", batches: 10) == [3, 5, 8, 10])
        #expect(try Self.savedBatches(interval: "1000tok", batches: 5, tokensPerBatch: 300) == [4, 5])
        #expect(try Self.savedBatches(interval: "600sec", batches: 5, secondsPerBatch: 250) == [3, 5])
        #expect(try Self.savedBatches(interval: "0.25dur", batches: 8, maxDuration: TrainingTime(8, .batch)) == [2, 4, 6, 8])
    }

    @Test func closureIntervalDecides() throws {
        let saved = try Self.savedBatches(
            interval: .custom { timestamp, event in event == .batchEnd && timestamp.batch == 3 }, batches: 5)
        #expect(saved == [3, 5])
    }

    @Test func badIntervalsAreRefused() throws {
        for text in ["", "ep", "-1ba", "1.5ba", "3parsecs", "0ep"] {
            #expect(throws: CheckpointError.self, "\(text)") { try SaveInterval.parse(text) }
        }
        #expect(throws: CheckpointError.self) {
            try CheckpointSaver(options: .init(saveInterval: "0.5dur", saveOnTermination: false))
        }
    }

    @Test func retentionKeepsTheNewestAndContinuesAfterAResume() throws {
        try withTemporaryFolder { folder in
            let options = CheckpointSaver.Options(
                folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", checkpointsToKeep: 2,
                saveOnTermination: false)
            let first = try CheckpointSaver(options: options)
            try first.fitStart(Self.state(batch: 0))
            for batch in 1...4 { try first.batchEnd(Self.state(batch: batch)) }
            try first.waitForPendingSave()
            #expect(try folderContents(folder).filter { $0.hasPrefix("ba") } == ["ba3.safetensors", "ba4.safetensors"])

            // A new process: it resumes, and its rotation removes what the first one kept.
            let second = try CheckpointSaver(options: options)
            var state = Self.state(batch: 0)
            let resumed = try #require(try second.autoresume(into: &state))
            #expect(resumed.path.hasSuffix("ba4.safetensors"))
            #expect(state.timestamp.batch == 4)
            for batch in 5...6 { try second.batchEnd(Self.state(batch: batch)) }
            try second.fitEnd(Self.state(batch: 6))
            #expect(try folderContents(folder).filter { $0.hasPrefix("ba") } == ["ba5.safetensors", "ba6.safetensors"])
            #expect(try second.keptCheckpoints == [folder + "/ba5.safetensors", folder + "/ba6.safetensors"])
        }
    }

    @Test func latestPointerIsARelativeSymlinkAndAPointerFile() throws {
        try withTemporaryFolder { folder in
            let saver = try CheckpointSaver(options: .init(
                folder: folder + "/{run_name}", filename: "ckpts/ba{batch}.safetensors", saveInterval: "1ba",
                saveOnTermination: false))
            try saver.fitStart(Self.state(batch: 0))
            for batch in 1...3 {
                try saver.batchEnd(Self.state(batch: batch))
                let link = folder + "/run/latest-rank0"
                #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "ckpts/ba\(batch).safetensors")
                let pointer = try String(contentsOfFile: link + ".pointer", encoding: .utf8)
                #expect(pointer == "ckpts/ba\(batch).safetensors\n")
                // The pointer file alone is enough, as where symlinks are lost.
                try FileManager.default.removeItem(atPath: link)
                #expect(LatestPointer.target(of: link) == folder + "/run/ckpts/ba\(batch).safetensors")
            }
        }
    }

    @Test func overwriteChecksUnderstandEveryTemplate() throws {
        try withTemporaryFolder { folder in
            let options = CheckpointSaver.Options(
                folder: folder + "/{run_name}", filename: "{run_name}-ep{epoch:03d}-ba{batch:06d}-{total_wct:.1f}s.safetensors",
                saveInterval: "1ba", saveOnTermination: false)
            let first = try CheckpointSaver(options: options)
            try first.fitStart(Self.state(batch: 0))
            try first.batchEnd(Self.state(batch: 1, seconds: 2.5))
            try first.fitEnd(Self.state(batch: 1, seconds: 2.5))
            #expect(try folderContents(folder + "/run").contains("run-ep000-ba000001-2.5s.safetensors"))

            // A second run in the same folder must not silently overwrite or mix with it.
            let error = #expect(throws: CheckpointError.self) {
                try CheckpointSaver(options: options).fitStart(Self.state(batch: 0))
            }
            #expect(error?.code == .alreadyExists)
            #expect(error?.message.contains("run-ep000-ba000001-2.5s.safetensors") == true)

            // Another run name in the same folder is not a clash; overwrite allows it.
            var other = Self.state(batch: 0)
            other.runName = "other"
            try CheckpointSaver(options: .init(folder: folder + "/run", filename: options.filename, saveOnTermination: false)).fitStart(other)
            var allowed = options
            allowed.overwrite = true
            try CheckpointSaver(options: allowed).fitStart(Self.state(batch: 0))
        }
    }

    @Test func autoresumeFallsBackFromADamagedNewestCheckpoint() throws {
        try withTemporaryFolder { folder in
            let options = CheckpointSaver.Options(
                folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", saveOnTermination: false)
            let first = try CheckpointSaver(options: options)
            try first.fitStart(Self.state(batch: 0))
            for batch in 1...3 { try first.batchEnd(Self.state(batch: batch, value: Float(batch))) }
            try first.waitForPendingSave()

            // Flip the last byte of the newest file: a tensor byte.
            let newest = folder + "/ba3.safetensors"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: newest))
            bytes[bytes.count - 1] ^= 0xFF
            try bytes.write(to: URL(fileURLWithPath: newest))

            let second = try CheckpointSaver(options: options)
            var state = Self.state(batch: 0)
            let resumed = try #require(try second.autoresume(into: &state))
            #expect(resumed.path == folder + "/ba2.safetensors")
            #expect(state == Self.state(batch: 2, value: 2))
            // Training on replaces the damaged file, overwrite or not.
            try second.batchEnd(Self.state(batch: 3, value: 3))
            try second.fitEnd(Self.state(batch: 3, value: 3))
            let reloaded = try loadCheckpoint(newest)
            #expect(reloaded.model == Self.state(batch: 3, value: 3).model)
        }
    }

    /// Only damage makes autoresume try an earlier file: a model that does not match would not
    /// match any checkpoint of the run, and must not be hidden behind a fresh start.
    @Test func autoresumeThrowsWhenTheModelDoesNotMatch() throws {
        try withTemporaryFolder { folder in
            let options = CheckpointSaver.Options(
                folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", saveOnTermination: false)
            let first = try CheckpointSaver(options: options)
            try first.fitStart(Self.state(batch: 0))
            try first.batchEnd(Self.state(batch: 1))
            var other = TrainingState(runName: "run")
            other.model["renamed"] = .tensor(try Tensor(shape: [2], scalars: [Float(0), 0]))
            let error = #expect(throws: CheckpointError.self) {
                try CheckpointSaver(options: options).autoresume(into: &other)
            }
            #expect(error?.code == .keyMismatch)
        }
    }

    @Test func autoresumeWithNothingToResumeReturnsNil() throws {
        try withTemporaryFolder { folder in
            let saver = try CheckpointSaver(options: .init(folder: folder + "/empty", saveOnTermination: false))
            var state = Self.state(batch: 0)
            #expect(try saver.autoresume(into: &state) == nil)
            #expect(state == Self.state(batch: 0))
        }
    }

    /// The training loop may change its buffers as soon as the save call returns.
    @Test func asynchronousSnapshotIsIsolatedFromLaterChanges() throws {
        try withTemporaryFolder { folder in
            let count = 1 << 20
            let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            defer { buffer.deallocate() }
            _ = buffer.initialize(from: (0..<count).map { Float($0) })
            let saver = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", asynchronous: true,
                saveOnTermination: false))
            var state = TrainingState(runName: "run")
            state.model["w"] = .tensor(try Tensor(borrowing: UnsafeRawBufferPointer(buffer), dtype: .float32, shape: [count]))
            try saver.fitStart(state)
            state.timestamp.batch = 1
            try saver.batchEnd(state)
            // The trainer's next step overwrites the buffer while the save may still be writing.
            for index in 0..<count { buffer[index] = -1 }
            try saver.waitForPendingSave()
            let saved = try loadCheckpoint(folder + "/ba1.safetensors").model["w"]?.tensorValue
            let values = try #require(saved).scalars(as: Float.self)
            #expect(values.count == count)
            #expect(values.indices.allSatisfy { values[$0] == Float($0) })
        }
    }

    /// The snapshot memory prepared at fitStart (for the sizes then) serves saves of other
    /// sizes too, and each save holds exactly the bytes of its own moment.
    @Test func preparedSnapshotsHoldEachSavesBytes() throws {
        try withTemporaryFolder { folder in
            // 12 MiB: several pieces of the parallel copy.
            let large = 3 << 20, small = 1000
            let first = UnsafeMutableBufferPointer<Float>.allocate(capacity: large)
            let second = UnsafeMutableBufferPointer<Float>.allocate(capacity: small)
            defer { first.deallocate(); second.deallocate() }
            func fill(_ offset: Float) {
                for index in 0..<large { first[index] = Float(index) + offset }
                for index in 0..<small { second[index] = -Float(index) - offset }
            }
            func expectSaved(_ path: String, tensors: [String: (UnsafeMutableBufferPointer<Float>, Int)], offset: Float) throws {
                let loaded = try loadCheckpoint(path)
                for (name, (_, count)) in tensors {
                    let values = try #require(loaded.model[name]?.tensorValue).scalars(as: Float.self)
                    let sign: Float = name == "b" ? -1 : 1
                    #expect(values.count == count, "\(name)")
                    #expect(values.indices.allSatisfy { values[$0] == sign * (Float($0) + offset) }, "\(name) in \(path)")
                }
            }
            let saver = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", asynchronous: true,
                saveOnTermination: false))
            var state = TrainingState(runName: "run")
            state.model["a"] = .tensor(try Tensor(borrowing: UnsafeRawBufferPointer(first), dtype: .float32, shape: [large]))
            fill(0)
            try saver.fitStart(state)
            // The first save's state is not the one prepared for: one tensor more, one shorter.
            let half = large / 2
            state.model["a"] = .tensor(try Tensor(
                borrowing: UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: first[0..<half])), dtype: .float32, shape: [half]))
            state.model["b"] = .tensor(try Tensor(borrowing: UnsafeRawBufferPointer(second), dtype: .float32, shape: [small]))
            fill(1)
            state.timestamp.batch = 1
            try saver.batchEnd(state)
            fill(2)
            state.timestamp.batch = 2
            try saver.batchEnd(state)
            fill(3)
            try saver.waitForPendingSave()
            let tensors = ["a": (first, half), "b": (second, small)]
            try expectSaved(folder + "/ba1.safetensors", tensors: tensors, offset: 1)
            try expectSaved(folder + "/ba2.safetensors", tensors: tensors, offset: 2)
            try CheckpointFile.open(folder + "/ba2.safetensors").verify()
        }
    }

    @Test func aFailedBackgroundSaveSurfacesAtTheNextSaveAndAtTheEnd() throws {
        try withTemporaryFolder { folder in
            // The folder is a file: every save fails.
            _ = FileManager.default.createFile(atPath: folder + "/blocked", contents: Data([1]))
            let saver = try CheckpointSaver(options: .init(
                folder: folder + "/blocked", filename: "ba{batch}.safetensors", saveInterval: "1ba", asynchronous: true,
                saveOnTermination: false))
            try saver.fitStart(Self.state(batch: 0))
            try saver.batchEnd(Self.state(batch: 1))  // the failure happens in the background
            #expect(throws: CheckpointError.self) { try saver.batchEnd(Self.state(batch: 2)) }
            try saver.batchEnd(Self.state(batch: 3))
            #expect(throws: CheckpointError.self) { try saver.fitEnd(Self.state(batch: 3)) }
        }
    }

    @Test func keepZeroLeavesNothingLocally() throws {
        try withTemporaryFolder { folder in
            let saver = try CheckpointSaver(options: .init(
                folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", checkpointsToKeep: 0,
                saveOnTermination: false))
            try saver.fitStart(Self.state(batch: 0))
            try saver.batchEnd(Self.state(batch: 1))
            try saver.fitEnd(Self.state(batch: 1))
            #expect(try folderContents(folder).filter { !$0.hasPrefix(".") }.isEmpty)
        }
    }
}
