import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

#if canImport(Glibc)
import Glibc
#endif

/// Retention that survives kills: what a process killed at any moment leaves (a checkpoint
/// committed but not recorded, one dropped from the ledger but not deleted, temporaries), the
/// next run's saver takes back, prunes or removes, and it never touches another run's files.
@Suite struct RetentionReconcileTests {
    static func options(_ folder: String, keep: Int) -> CheckpointSaver.Options {
        CheckpointSaver.Options(folder: folder, filename: "ba{batch}.safetensors", saveInterval: "1ba", checkpointsToKeep: keep)
    }

    static func checkpoints(in folder: String) throws -> [String] {
        try folderContents(folder).filter { !$0.hasPrefix(".") && $0.hasSuffix(".safetensors") }
            .sorted { Int($0.dropFirst(2).prefix { $0.isNumber })! < Int($1.dropFirst(2).prefix { $0.isNumber })! }
    }

    static func ledger(in folder: String) throws -> RetentionLedger {
        try RetentionLedger.load(from: RetentionLedger.path(folder: folder, rank: 0))
    }

    /// Trains batches `range` with a fresh saver, as one process would.
    static func train(_ folder: String, keep: Int, _ range: ClosedRange<Int>) throws {
        let saver = try CheckpointSaver(options: options(folder, keep: keep))
        var state = SaverTests.state(batch: 0)
        if try saver.autoresume(into: &state) == nil { try saver.fitStart(state) }
        for batch in range { try saver.batchEnd(SaverTests.state(batch: batch, value: Float(batch))) }
        try saver.waitForPendingSave()
    }

    /// The two windows a kill can hit, rebuilt by hand: a checkpoint committed whose ledger
    /// update never happened (ba5), and one the ledger dropped whose deletion never happened
    /// (ba2, older than everything listed). The next run adopts both in training order and
    /// prunes to the newest two, and the ledger (even one written before positions were
    /// recorded) and the latest pointer come out right.
    @Test func checkpointsTheLedgerLostAreAdoptedAndPruned() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, keep: 2, 1...4)
            #expect(try Self.checkpoints(in: folder) == ["ba3.safetensors", "ba4.safetensors"])
            try saveCheckpoint(SaverTests.state(batch: 5, value: 5), filename: folder + "/ba5.safetensors")
            try saveCheckpoint(SaverTests.state(batch: 2, value: 2), filename: folder + "/ba2.safetensors")
            // A ledger from before positions were recorded: the saver reads them from the files.
            var old = try Self.ledger(in: folder)
            old.positions = nil
            try old.save(to: RetentionLedger.path(folder: folder, rank: 0))

            let saver = try CheckpointSaver(options: Self.options(folder, keep: 2))
            var state = SaverTests.state(batch: 0)
            let resumed = try #require(try saver.autoresume(into: &state))
            #expect(resumed.path == folder + "/ba5.safetensors")
            #expect(try Self.checkpoints(in: folder) == ["ba4.safetensors", "ba5.safetensors"])
            #expect(try Self.ledger(in: folder).checkpoints == ["ba4.safetensors", "ba5.safetensors"])
            #expect(LatestPointer.target(of: folder + "/latest-rank0") == folder + "/ba5.safetensors")

            // Rotation carries on from there.
            try saver.batchEnd(SaverTests.state(batch: 6, value: 6))
            try saver.fitEnd(SaverTests.state(batch: 6, value: 6))
            #expect(try Self.checkpoints(in: folder) == ["ba5.safetensors", "ba6.safetensors"])
            let ledger = try Self.ledger(in: folder)
            #expect(ledger.checkpoints == ["ba5.safetensors", "ba6.safetensors"])
            #expect(ledger.positions?["ba6.safetensors"] == CheckpointPosition(epoch: 0, batch: 6, sample: 24))
        }
    }

    /// A run started without autoresume (overwriting) reconciles too.
    @Test func fitStartReconcilesWhenOverwriting() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, keep: 2, 1...2)
            try saveCheckpoint(SaverTests.state(batch: 3, value: 3), filename: folder + "/ba3.safetensors")
            var options = Self.options(folder, keep: 2)
            options.overwrite = true
            try CheckpointSaver(options: options).fitStart(SaverTests.state(batch: 0))
            #expect(try Self.checkpoints(in: folder) == ["ba2.safetensors", "ba3.safetensors"])
            #expect(try Self.ledger(in: folder).checkpoints == ["ba2.safetensors", "ba3.safetensors"])
        }
    }

    /// The checkpoint resumed from is never pruned, even when it is not the newest (the newest
    /// is damaged), and nothing newer is pruned in its place: keeping one, the saver keeps
    /// both until training saves again.
    @Test func theCheckpointResumedFromIsNeverPruned() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, keep: 2, 1...4)
            try saveCheckpoint(SaverTests.state(batch: 2, value: 2), filename: folder + "/ba2.safetensors")
            let newest = folder + "/ba4.safetensors"
            var bytes = try readBytes(newest)
            bytes[bytes.count - 1] ^= 0xFF
            try writeBytes(bytes, to: newest)

            let saver = try CheckpointSaver(options: Self.options(folder, keep: 1))
            var state = SaverTests.state(batch: 0)
            #expect(try saver.autoresume(into: &state)?.path == folder + "/ba3.safetensors")
            #expect(try Self.checkpoints(in: folder) == ["ba3.safetensors", "ba4.safetensors"])
            #expect(try Self.ledger(in: folder).checkpoints == ["ba3.safetensors", "ba4.safetensors"])
            try saver.batchEnd(SaverTests.state(batch: 4, value: 4))
            try saver.waitForPendingSave()
            #expect(try Self.checkpoints(in: folder) == ["ba4.safetensors"])
            #expect(try loadCheckpoint(newest).model == SaverTests.state(batch: 4, value: 4).model)
        }
    }

    /// In a folder runs share (the file name does not hold the run's name), the saver adopts
    /// and resumes only its own run's files, and deletes nothing the template could not have
    /// made.
    @Test func anotherRunsCheckpointsAndOtherFilesAreLeftAlone() throws {
        try withTemporaryFolder { folder in
            try Self.train(folder, keep: 1, 1...2)
            var other = SaverTests.state(batch: 9, value: 9)
            other.runName = "other-run"
            try saveCheckpoint(other, filename: folder + "/ba9.safetensors")
            try saveCheckpoint(SaverTests.state(batch: 1, value: 1), filename: folder + "/ba1.safetensors.bak")
            try Data("notes".utf8).write(to: URL(fileURLWithPath: folder + "/notes.txt"))
            try saveCheckpoint(SaverTests.state(batch: 1, value: 1), filename: folder + "/ba1.safetensors")

            let saver = try CheckpointSaver(options: Self.options(folder, keep: 1))
            var state = SaverTests.state(batch: 0)
            #expect(try saver.autoresume(into: &state)?.path == folder + "/ba2.safetensors")
            #expect(try Self.checkpoints(in: folder) == ["ba2.safetensors", "ba9.safetensors"])
            #expect(try folderContents(folder).contains("ba1.safetensors.bak"))
            #expect(try folderContents(folder).contains("notes.txt"))
            #expect(try Self.ledger(in: folder).checkpoints == ["ba2.safetensors"])
        }
    }

    /// Temporaries whose writer is gone are removed whatever their final name (a checkpoint,
    /// the ledger, the latest pointer's symlink), in subfolders too; a live process's, and
    /// another host's, are kept.
    @Test func abandonedTemporariesAreRemovedAtTheStart() throws {
        try withTemporaryFolder { folder in
            let dead = try Self.deadProcessID()
            let host = AtomicFileWriter.hostName
            let abandoned = [
                ".ba7.safetensors.partial-\(host)-\(dead)-12345", ".checkpoints-rank0.json.partial-\(host)-\(dead)-1",
                ".latest-rank0.link-\(host)-\(dead)-99", "sub/.ba8.safetensors.partial-\(host)-\(dead)-7",
            ]
            let kept = [".ba7.safetensors.partial-\(host)-\(getpid())-5", ".ba7.safetensors.partial-elsewhere-\(dead)-5", ".hidden-notes"]
            try FileManager.default.createDirectory(atPath: folder + "/sub", withIntermediateDirectories: true)
            for name in abandoned + kept { try Data([1, 2, 3]).write(to: URL(fileURLWithPath: folder + "/" + name)) }

            try CheckpointSaver(options: .init(folder: folder, filename: "{batch}/ba{batch}.safetensors")).fitStart(SaverTests.state(batch: 0))
            for name in abandoned { #expect(!FileManager.default.fileExists(atPath: folder + "/" + name), "\(name)") }
            for name in kept { #expect(FileManager.default.fileExists(atPath: folder + "/" + name), "\(name)") }
        }
    }

    @Test func ledgerOrdersAdoptedEntriesByPosition() {
        var ledger = RetentionLedger(checkpoints: ["a", "b"], positions: ["b": CheckpointPosition(epoch: 0, batch: 20)])
        let positions = ["a": CheckpointPosition(epoch: 0, batch: 10)]
        let pruned = ledger.reconcile(
            adopting: ["c": CheckpointPosition(epoch: 1, batch: 20), "z": CheckpointPosition(epoch: 0, batch: 5)], keep: 3,
            protected: [], mayPrune: { _ in true }, position: { positions[$0] })
        // By batch, then epoch: an epoch's end follows its last batch.
        #expect(pruned == ["z"])
        #expect(ledger.checkpoints == ["a", "b", "c"])
        #expect(ledger.positions?["z"] == nil && ledger.positions?["a"] == CheckpointPosition(epoch: 0, batch: 10))

        // Entries whose position is unknown go first; protected and unprunable ones stay.
        var unknown = RetentionLedger(checkpoints: ["x", "y"])
        let removed = unknown.reconcile(
            adopting: ["new": CheckpointPosition(epoch: 0, batch: 1)], keep: 1, protected: ["x"],
            mayPrune: { $0 != "new" }, position: { _ in nil })
        #expect(removed == ["y"])
        #expect(unknown.checkpoints == ["x", "new"])
    }

    /// A process id that no process has: a child's, once it has exited.
    static func deadProcessID() throws -> Int32 {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        return child.processIdentifier
    }
}
