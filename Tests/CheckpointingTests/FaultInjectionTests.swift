import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Checkpointing

/// Faults at the system calls of real saves and loads, injected through the seam
/// (``SyscallFaults``): a full disk at every write, a failing device at every flush, a failed
/// rename or folder flush, `EINTR` at every call, and a failing device while loading. A failed
/// save must throw an error that names the checkpoint, leave the previous checkpoint under
/// that name bit for bit and loadable, and leave no temporary file behind.
///
/// Each test's faults are scoped to its own temporary folder, so these tests run in parallel
/// with the rest of the suite without touching its calls.
@Suite struct FaultInjectionTests {
    /// A name whose extension chain picks a kind of save.
    struct SaveKind: CustomTestStringConvertible, Sendable {
        var name: String
        var testDescription: String { name }
    }

    /// Native, torch, compressed (one streaming codec, one multi-threaded) and tar saves.
    static let kinds = ["x.safetensors", "x.pt", "x.pt.zst", "x.safetensors.gz", "x.tar", "x.tar.gz"].map(SaveKind.init)

    /// A small training state; `seed` changes every tensor.
    static func state(seed: UInt64) throws -> TrainingState {
        var random = SplitMix64(seed: seed)
        func tensor(_ shape: [Int]) throws -> StateValue {
            .tensor(try Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float(random.next() % 10_000) / 7 }))
        }
        var state = TrainingState(runName: "faults")
        state.model["fc.weight"] = try tensor([8, 4])
        state.model["fc.bias"] = try tensor([8])
        state.optimizers["SGD"] = ["state": ["momentum": try tensor([8, 4])], "param_groups": [["lr": 0.1]]]
        state.timestamp = Timestamp(epoch: 1, batch: Int(seed))
        return state
    }

    /// A folder whose checkpoint `name` holds the previous state, and the next state to save
    /// over it.
    struct Scene {
        let folder: String
        let name: String
        let previous: [UInt8]
        let previousTree: StateValue
        let next: TrainingState
        var path: String { folder + "/" + name }

        init(folder: String, kind: SaveKind) throws {
            self.folder = folder
            name = kind.name
            try saveCheckpoint(try FaultInjectionTests.state(seed: 1), filename: folder + "/" + name)
            previous = try readBytes(folder + "/" + name)
            previousTree = try CheckpointFile.open(folder + "/" + name).tree
            next = try FaultInjectionTests.state(seed: 2)
        }

        /// Saves the next state over the previous one with `faults`.
        func save(failing faults: [SyscallFaults.Fault] = []) -> (result: Result<[String], any Error>, trace: SyscallFaults.Trace) {
            SyscallFaults.run(under: folder, failing: faults) { try saveCheckpoint(next, filename: path) }
        }

        /// The calls of a save without faults, and the tree it wrote; the previous checkpoint is
        /// put back afterwards.
        func cleanSave() throws -> (trace: SyscallFaults.Trace, tree: StateValue) {
            let (result, trace) = save()
            _ = try result.get()
            let tree = try CheckpointFile.open(path).tree
            try restorePrevious()
            return (trace, tree)
        }

        /// Puts the previous checkpoint back under a new inode, as a save does: trees read
        /// before stay mapped to the bytes they were read from.
        func restorePrevious() throws {
            try Data(previous).write(to: URL(fileURLWithPath: path), options: .atomic)
        }

        /// Checks that a save failed with a clear error naming the checkpoint and changed nothing.
        func expectFailedAndUntouched(
            _ result: Result<[String], any Error>, because fault: String, messageContains fragments: [String],
            sourceLocation: SourceLocation = #_sourceLocation
        ) throws {
            guard case .failure(let thrown) = result else {
                Issue.record("the save succeeded despite \(fault)", sourceLocation: sourceLocation)
                try restorePrevious()
                return
            }
            let error = try #require(thrown as? CheckpointError, "\(fault): \(thrown)", sourceLocation: sourceLocation)
            #expect(error.code == .io, "\(fault): \(error)", sourceLocation: sourceLocation)
            #expect(error.path == path, "\(fault): the error should name the checkpoint: \(error)", sourceLocation: sourceLocation)
            for fragment in fragments {
                #expect(error.message.contains(fragment), "\(fault): \(error.message)", sourceLocation: sourceLocation)
            }
            #expect(try folderContents(folder) == [name], "\(fault): a temporary was left", sourceLocation: sourceLocation)
            #expect(try readBytes(path) == previous, "\(fault): the previous checkpoint changed", sourceLocation: sourceLocation)
        }

        /// The previous checkpoint loads, verified, as it was saved.
        func expectPreviousLoads(sourceLocation: SourceLocation = #_sourceLocation) throws {
            let file = try CheckpointFile.open(path)
            try file.verify()
            #expect(file.tree == previousTree, sourceLocation: sourceLocation)
        }
    }

    @Test("ENOSPC at each write of a save fails it cleanly and keeps the previous checkpoint", arguments: kinds)
    func diskFullAtEveryWrite(kind: SaveKind) throws {
        try withTemporaryFolder { folder in
            let scene = try Scene(folder: folder, kind: kind)
            let clean = try scene.cleanSave().trace
            let points = [Syscall.Kind.write, .pwrite].flatMap { call in (0..<clean.count(call)).map { (call, $0 + 1) } }
            #expect(clean.count(.write) > 0)
            for (call, index) in points {
                let (result, trace) = scene.save(failing: [.init(call, call: index, errno: ENOSPC)])
                #expect(trace.injected.count == 1, "\(call) \(index) was not reached")
                try scene.expectFailedAndUntouched(
                    result, because: "ENOSPC at \(call) \(index)",
                    messageContains: ["write failed: the disk is full", "not saved"])
            }
            try scene.expectPreviousLoads()
            // The figures the reliability report quotes: how many fault points each save kind has.
            print("fault injection (\(kind.name)): ENOSPC at each of \(points.count) writes (\(clean.count(.write)) write, \(clean.count(.pwrite)) pwrite)")
        }
    }

    @Test("EIO at each fsync fails the save and is never retried; after the rename the error says the file is in place", arguments: kinds)
    func deviceErrorAtEveryFsync(kind: SaveKind) throws {
        try withTemporaryFolder { folder in
            let scene = try Scene(folder: folder, kind: kind)
            let (clean, nextTree) = try scene.cleanSave()
            let fsyncs = clean.calls.filter { $0.kind == .fsync }
            #expect(fsyncs.map(\.path).contains(folder), "the folder is flushed after the rename")
            #expect(fsyncs.contains { $0.path != folder }, "the file is flushed before the rename")
            for index in 1...fsyncs.count {
                let (result, trace) = scene.save(failing: [.init(.fsync, call: index, errno: EIO)])
                let failed = try #require(trace.injected.first)
                let after = trace.calls.drop(while: { $0 != failed }).dropFirst()
                #expect(!after.contains { $0.kind == .fsync && $0.path == failed.path }, "a failed fsync was retried: \(trace.calls)")
                if failed.path != folder {
                    try scene.expectFailedAndUntouched(
                        result, because: "EIO at fsync \(index)", messageContains: ["fsync", "I/O error", "not saved"])
                    continue
                }
                // The rename was done: the new file is in place, complete, but not yet durable.
                let error = try #require(result.failureAsCheckpointError, "the save succeeded despite a failed folder fsync")
                #expect(error.path == scene.path)
                #expect(error.message.contains("renamed into place") && error.message.contains("power loss"), "\(error.message)")
                #expect(error.message.contains("I/O error"))
                #expect(try folderContents(folder) == [kind.name])
                #expect(try CheckpointFile.open(scene.path).tree == nextTree)
                try scene.restorePrevious()
            }
            try scene.expectPreviousLoads()
            print("fault injection (\(kind.name)): EIO at each of \(fsyncs.count) fsyncs")
        }
    }

    @Test("a failed rename or a failed create leaves the previous checkpoint and no temporary", arguments: kinds)
    func failedRenameOrCreate(kind: SaveKind) throws {
        try withTemporaryFolder { folder in
            let scene = try Scene(folder: folder, kind: kind)
            let (renamed, renameTrace) = scene.save(failing: [.init(.rename, call: 1, errno: EACCES)])
            #expect(renameTrace.injected.count == 1)
            try scene.expectFailedAndUntouched(renamed, because: "EACCES at rename", messageContains: ["rename failed: permission denied"])
            let (created, createTrace) = scene.save(failing: [.init(.open, call: 1, errno: EDQUOT)])
            #expect(createTrace.injected.map(\.kind) == [.open])
            try scene.expectFailedAndUntouched(created, because: "EDQUOT at open", messageContains: ["quota"])
            try scene.expectPreviousLoads()
        }
    }

    @Test("EINTR at every call of a save is retried, except close, and the save succeeds", arguments: kinds)
    func interruptedEverywhere(kind: SaveKind) throws {
        try withTemporaryFolder { folder in
            let scene = try Scene(folder: folder, kind: kind)
            let (clean, nextTree) = try scene.cleanSave()
            let (result, trace) = scene.save(failing: Self.interruptEveryCall(of: clean))
            _ = try result.get()
            #expect(try CheckpointFile.open(scene.path).tree == nextTree)
            #expect(try folderContents(folder) == [kind.name])
            Self.expectRetriedOnce(clean: clean, interrupted: trace)
            print("fault injection (\(kind.name)): EINTR at every one of \(clean.calls.count) system calls of a save")
        }
    }

    /// `EINTR` at every call of a run that made the `clean` calls: each call is interrupted once
    /// (its odd-numbered attempts), so it succeeds when retried once; of those ``notRetried``,
    /// as many as the clean run made, so code that wrongly retried them would see a real
    /// `close` of a closed descriptor fail rather than loop.
    static func interruptEveryCall(of clean: SyscallFaults.Trace) -> [SyscallFaults.Fault] {
        Syscall.Kind.allCases.map { kind in
            let made = clean.count(kind)
            return notRetried.contains(kind)
                ? .init(kind, calls: { $0 <= made }, errno: EINTR)
                : .init(kind, calls: { $0 % 2 == 1 }, errno: EINTR)
        }
    }

    /// Calls never retried: releases (a second `close` could close another thread's file) and
    /// hints, whose failure changes nothing.
    static let notRetried: Set<Syscall.Kind> = [.close, .munmap, .madvise, .fadvise]

    /// Each call of the clean run was made twice (interrupted, then retried), but those
    /// ``notRetried`` once.
    static func expectRetriedOnce(
        clean: SyscallFaults.Trace, interrupted: SyscallFaults.Trace, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(!clean.calls.isEmpty, sourceLocation: sourceLocation)
        for kind in Set(clean.calls.map(\.kind)) {
            let expected = notRetried.contains(kind) ? clean.count(kind) : 2 * clean.count(kind)
            #expect(interrupted.count(kind) == expected, "\(kind): \(interrupted.count(kind)) calls, \(expected) expected", sourceLocation: sourceLocation)
        }
        #expect(interrupted.injected.count == clean.calls.count, sourceLocation: sourceLocation)
    }

    @Test("a failing device while loading gives an error naming the file; EINTR while loading is retried", arguments: kinds)
    func faultsWhileLoading(kind: SaveKind) throws {
        try withTemporaryFolder { folder in
            let path = folder + "/" + kind.name
            let state = try Self.state(seed: 3)
            try saveCheckpoint(state, filename: path)
            let (loaded, clean) = SyscallFaults.run(under: folder) { try loadCheckpoint(path) }
            let expected = try loaded.get()
            let reads: [Syscall.Kind] = [.open, .fstat, .mmap]
            for call in reads {
                #expect(clean.count(call) > 0, "a load makes \(call)")
                for index in 0..<clean.count(call) {
                    let (result, trace) = SyscallFaults.run(under: folder, failing: [.init(call, call: index + 1, errno: EIO)]) {
                        try loadCheckpoint(path)
                    }
                    #expect(trace.injected.count == 1)
                    let error = try #require(result.failureAsCheckpointError, "the load succeeded despite EIO at \(call) \(index + 1)")
                    #expect(error.code == .io)
                    #expect(error.path == path, "\(error)")
                    #expect(error.message.contains("I/O error"), "\(error.message)")
                }
            }
            let (result, trace) = SyscallFaults.run(under: folder, failing: Self.interruptEveryCall(of: clean)) { try loadCheckpoint(path) }
            #expect(try result.get() == expected)
            Self.expectRetriedOnce(clean: clean, interrupted: trace)
        }
    }

    @Test func aFailingReadOfAShardManifestNamesIt() throws {
        try withTemporaryFolder { folder in
            try saveCheckpoint(try Self.state(seed: 4), filename: folder + "/ep{epoch}-rank{rank}", sharding: Sharding())
            let (clean, cleanTrace) = SyscallFaults.run(under: folder) { try loadCheckpoint(folder) }
            let expected = try clean.get()
            let manifest = try #require(cleanTrace.calls.first { $0.kind == .pread }?.path)
            #expect(manifest.hasSuffix(ShardManifest.suffix))
            let (result, _) = SyscallFaults.run(under: folder, failing: [.init(.pread, call: 1, errno: EIO)]) { try loadCheckpoint(folder) }
            let error = try #require(result.failureAsCheckpointError)
            #expect(error.code == .io)
            #expect(error.path == manifest)
            #expect(error.message.contains("cannot read the manifest") && error.message.contains("I/O error"), "\(error.message)")
            let (retried, _) = SyscallFaults.run(under: folder, failing: Self.interruptEveryCall(of: cleanTrace)) { try loadCheckpoint(folder) }
            #expect(try retried.get() == expected)
        }
    }

    @Test func faultsStayInTheirScope() throws {
        try withTemporaryFolder { folder in
            try withTemporaryFolder { other in
                let state = try Self.state(seed: 5)
                let (result, trace) = SyscallFaults.run(under: folder, failing: [.init(.write, calls: { _ in true }, errno: ENOSPC)]) {
                    try saveCheckpoint(state, filename: other + "/x.safetensors")
                    // A sibling whose name starts with the scope's is outside it too.
                    try saveCheckpoint(state, filename: folder + "-sibling.safetensors")
                }
                defer { try? FileManager.default.removeItem(atPath: folder + "-sibling.safetensors") }
                _ = try result.get()
                #expect(trace.calls.isEmpty)
            }
        }
    }
}

extension Result where Failure == any Error {
    /// The ``CheckpointError`` this result failed with, or `nil` when it succeeded or failed otherwise.
    var failureAsCheckpointError: CheckpointError? {
        if case .failure(let error) = self { return error as? CheckpointError }
        return nil
    }
}
