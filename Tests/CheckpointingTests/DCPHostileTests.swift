import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Damaged and hostile DCP folders: each is refused with a clear error that names what is
/// wrong and where, never a crash, and a `.metadata` that names any global outside DCP's
/// classes runs nothing.
@Suite struct DCPHostileTests {
    /// A folder holding the `w` tensor (4 × 2 float32) saved by this library, to damage.
    private static func savedFolder(in folder: String) throws -> (path: String, chunk: DistributedCheckpoint.Chunk) {
        let target = folder + "/victim"
        let tensor = try Tensor(shape: [4, 2], scalars: (0..<8).map(Float.init))
        try saveCheckpoint(tree: ["w": .tensor(tensor), "step": 3], filename: target, format: .distributedCheckpoint)
        let chunk = try #require(DistributedCheckpoint.open(target).tensors.first?.chunks.first)
        return (target, chunk)
    }

    /// Replaces the folder's `.metadata` with one describing `w` as `chunks`.
    private static func describe(
        _ folder: String, shape: [Int] = [4, 2], chunks: [(TensorSlice, DCPMetadata.Location)],
        path: [DCPKey] = [.name("w")], extra: [(fqn: String, path: [DCPKey], entry: DCPMetadataPickler.Entry)] = []
    ) throws {
        let pickle = DCPMetadataPickler.pickle(
            [("w", path, .tensor(dtype: .float32, shape: shape, chunks: chunks))] + extra, checkpointID: folder, saveID: "test")
        try writeBytes(pickle, to: folder + "/.metadata")
    }

    private static func location(_ chunk: DistributedCheckpoint.Chunk, offset: Int? = nil, length: Int? = nil, file: String? = nil) -> DCPMetadata.Location {
        DCPMetadata.Location(file: file ?? chunk.file, offset: offset ?? chunk.offset, length: length ?? chunk.length)
    }

    // MARK: Globals

    /// Protocol-4 pickle pieces.
    private static func text(_ string: String) -> [UInt8] { [0x8C, UInt8(string.utf8.count)] + Array(string.utf8) }
    private static func stackGlobal(_ module: String, _ name: String) -> [UInt8] { text(module) + text(name) + [0x93] }

    @Test(arguments: [
        ("os", "system"), ("builtins", "eval"), ("posix", "system"), ("numpy", "ndarray"), ("collections", "Counter"),
        ("torch._utils", "_rebuild_tensor_v2"), ("torch.distributed.checkpoint.metadata", "TensorStorageMetadataX"),
        ("subprocess", "Popen"),
    ])
    func aMetadataNamingAnotherGlobalIsRefusedAndRunsNothing(module: String, name: String) throws {
        try withTemporaryFolder { folder in
            let target = folder + "/evil"
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            let marker = folder + "/ran"
            // cls("touch <marker>"): what a naive pickle.load would run.
            let pickle: [UInt8] = [0x80, 0x04] + Self.stackGlobal(module, name) + Self.text("touch " + marker) + [0x85, 0x52, 0x2E]
            try writeBytes(pickle, to: target + "/.metadata")
            let error = expectCheckpointError(.disallowedGlobal, messageContains: ["\(module).\(name)", "refused"]) {
                _ = try CheckpointFile.open(target)
            }
            #expect(error?.path == target + "/.metadata")
            #expect(!fileExists(marker))
            // The old-style GLOBAL opcode is refused the same way.
            let classic: [UInt8] = [0x80, 0x02, 0x63] + Array("\(module)\n\(name)\n".utf8) + [0x29, 0x52, 0x2E]
            try writeBytes(classic, to: target + "/.metadata")
            expectCheckpointError(.disallowedGlobal, messageContains: ["\(module).\(name)"]) { _ = try DistributedCheckpoint.open(target) }
        }
    }

    @Test func persistentIdsAndOtherOpcodesAreRefusedInMetadata() throws {
        try withTemporaryFolder { folder in
            let target = folder + "/evil"
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            for (pickle, words) in [
                ([0x80, 0x04] + Self.text("x") + [0x51, 0x2E], ["BINPERSID", "storage"]),  // BINPERSID
                ([0x80, 0x04, 0x8E] + [UInt8](repeating: 0, count: 8) + [0x2E], ["BINBYTES8"]),
                ([0x80, 0x04, 0x95, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0x2E], ["truncated"]),  // a frame longer than the file
            ] as [([UInt8], [String])] {
                try writeBytes(pickle, to: target + "/.metadata")
                expectCheckpointError(.malformed, messageContains: words) { _ = try DistributedCheckpoint.open(target) }
            }
        }
    }

    // MARK: Structure

    @Test func chunkOffsetsPastTheFileAreRefused() throws {
        try withTemporaryFolder { folder in
            let (target, chunk) = try Self.savedFolder(in: folder)
            try Self.describe(target, chunks: [(.whole([4, 2]), Self.location(chunk, offset: chunk.offset + 10_000))])
            let error = expectCheckpointError(.malformed, messageContains: ["past the end", "truncated"]) {
                _ = try DistributedCheckpoint.open(target)
            }
            #expect(error?.path == target + "/" + chunk.file)
            // The same when the data file itself is cut short.
            let (again, _) = try Self.savedFolder(in: folder + "/b")
            try editFile(again + "/__0_0.distcp") { bytes in bytes.removeLast(100) }
            expectCheckpointError(.malformed, messageContains: ["past the end"]) { _ = try CheckpointFile.open(again) }
            expectCheckpointError(.malformed, messageContains: ["past the end"]) { _ = try loadCheckpointTree(again) }
        }
    }

    @Test func overlappingOrMissingChunksAreRefused() throws {
        try withTemporaryFolder { folder in
            let (target, chunk) = try Self.savedFolder(in: folder)
            let here = Self.location(chunk)
            let cases: [([(TensorSlice, DCPMetadata.Location)], [String])] = [
                ([(.rows(0..<3, of: [4, 2]), here), (.rows(2..<4, of: [4, 2]), Self.location(chunk, file: "__1_0.distcp"))], ["overlap"]),
                ([(.rows(0..<2, of: [4, 2]), here)], ["missing", "cover 4 of its 8"]),
                // The same box twice cannot even have two storage entries (they are keyed by offsets).
                ([(.rows(0..<4, of: [4, 2]), here), (.rows(0..<4, of: [4, 2]), Self.location(chunk, file: "__1_0.distcp"))], ["two storage locations"]),
                ([(TensorSlice(globalShape: [4, 2], offset: [3, 0], shape: [2, 2]), here)], ["outside"]),
                ([], ["no chunks"]),
            ]
            try FileManager.default.copyItem(atPath: target + "/__0_0.distcp", toPath: target + "/__1_0.distcp")
            for (chunks, words) in cases {
                try Self.describe(target, chunks: chunks)
                expectCheckpointError(.malformed, messageContains: words) { _ = try DistributedCheckpoint.open(target) }
                expectCheckpointError(.malformed, messageContains: words) { _ = try loadCheckpointTree(target) }
            }
            // Two entries on the same bytes.
            try Self.describe(
                target, chunks: [(.whole([4, 2]), here)], extra: [("v", [.name("v")], .value(Self.location(chunk, offset: chunk.offset + 8, length: 64)))])
            expectCheckpointError(.malformed, messageContains: ["same bytes"]) { _ = try DistributedCheckpoint.open(target) }
        }
    }

    @Test func locationsOutsideTheFolderOrMissingFilesAreRefused() throws {
        try withTemporaryFolder { folder in
            let (target, chunk) = try Self.savedFolder(in: folder)
            try writeBytes(try readBytes(target + "/__0_0.distcp"), to: folder + "/outside.distcp")
            for name in ["../outside.distcp", "/etc/passwd", "..", "a/b.distcp"] {
                try Self.describe(target, chunks: [(.whole([4, 2]), Self.location(chunk, file: name))])
                expectCheckpointError(.malformed, messageContains: ["not a plain file name"]) { _ = try CheckpointFile.open(target) }
            }
            try Self.describe(target, chunks: [(.whole([4, 2]), Self.location(chunk, file: "__7_0.distcp"))])
            expectCheckpointError(.notFound, messageContains: ["__7_0.distcp", "missing"]) { _ = try CheckpointFile.open(target) }
        }
    }

    @Test func keyPathsThatDoNotMakeOneTreeAreRefused() throws {
        try withTemporaryFolder { folder in
            let (target, chunk) = try Self.savedFolder(in: folder)
            let whole: [(TensorSlice, DCPMetadata.Location)] = [(.whole([4, 2]), Self.location(chunk))]
            let value = DCPMetadataPickler.Entry.value(Self.location(chunk, file: "__1_0.distcp"))
            try FileManager.default.copyItem(atPath: target + "/__0_0.distcp", toPath: target + "/__1_0.distcp")
            let cases: [([DCPKey], (String, [DCPKey]), [String])] = [
                // "w" is a tensor and the parent of "w.x".
                ([.name("w")], ("w.x", [.name("w"), .name("x")]), ["do not fit one tree"]),
                // A list index where another path made a dict.
                ([.name("a"), .name("b")], ("a.0", [.name("a"), .index(0)]), ["do not fit one tree"]),
                // A list index far beyond anything the checkpoint holds.
                ([.name("a"), .index(0)], ("a.99999999", [.name("a"), .index(99_999_999)]), ["far beyond"]),
            ]
            for (path, other, words) in cases {
                let fqn = DCPKey.fqn(path)
                let pickle = DCPMetadataPickler.pickle(
                    [(fqn, path, .tensor(dtype: .float32, shape: [4, 2], chunks: whole)), (other.0, other.1, value)], checkpointID: target,
                    saveID: "test")
                try writeBytes(pickle, to: target + "/.metadata")
                expectCheckpointError(.malformed, messageContains: words) { _ = try CheckpointFile.open(target) }
            }
            // A path that does not join back to its FQN.
            try Self.describe(target, chunks: whole, path: [.name("v")])
            expectCheckpointError(.malformed, messageContains: ["joins to \"v\""]) { _ = try DistributedCheckpoint.open(target) }
        }
    }

    @Test func anArchiveThatIsNotWhatTheMetadataSaysIsRefused() throws {
        try withTemporaryFolder { folder in
            let (target, chunk) = try Self.savedFolder(in: folder)
            // The archive holds a 4 × 2 tensor; say it is 8 × 1.
            try Self.describe(target, shape: [8, 1], chunks: [(.whole([8, 1]), Self.location(chunk))])
            let error = expectCheckpointError(.malformed, messageContains: ["\"w\"", "float32 tensor [4, 2]", "chunk [8, 1]"]) {
                _ = try CheckpointFile.open(target)
            }
            #expect(error?.path == target + "/__0_0.distcp")
            // An archive cut at the wrong place: the zip reader says so, with the offset in the file.
            try Self.describe(target, chunks: [(.whole([4, 2]), Self.location(chunk, length: chunk.length - 30))])
            let cut = expectCheckpointError(.malformed, messageContains: ["archive of \"w\"", "zip"]) { _ = try CheckpointFile.open(target) }
            #expect(cut?.offset.map { $0 >= chunk.offset } ?? true)
        }
    }

    @Test func aDamagedArchiveOpensButFailsVerification() throws {
        try withTemporaryFolder { folder in
            let (target, chunk) = try Self.savedFolder(in: folder)
            let tensorData = try #require(try DistributedCheckpoint.open(target).tensors.first).chunks[0]
            // The tensor's 32 bytes start on the archive's first 64-byte boundary after data.pkl and the small records.
            let archive = try ZipArchive(MappedFile(slice: tensorData.offset..<(tensorData.offset + tensorData.length), of: try MappedFile(path: target + "/" + chunk.file), path: "archive"))
            let record = try #require(archive.entry("data/0"))
            try editFile(target + "/" + chunk.file) { bytes in bytes[chunk.offset + record.dataOffset + 5] ^= 0x01 }
            let file = try CheckpointFile.open(target)
            expectCheckpointError(.checksumMismatch, messageContains: ["archive of \"w\"", "CRC-32"]) { try file.verify() }
            expectCheckpointError(.checksumMismatch) { try DistributedCheckpoint.open(target).verify() }
            expectCheckpointError(.checksumMismatch) { _ = try loadCheckpointTree(target) }
            #expect(try loadCheckpointTree(target, verifyChecksums: false).tree[path: "w"]?.tensorValue?.shape == [4, 2])
        }
    }

    @Test func aFolderWithoutMetadataIsAnUnfinishedSave() throws {
        try withTemporaryFolder { folder in
            let (target, _) = try Self.savedFolder(in: folder)
            try FileManager.default.removeItem(atPath: target + "/.metadata")
            for open in [{ _ = try CheckpointFile.open(target) }, { _ = try loadCheckpointTree(target) }, { _ = try DistributedCheckpoint.open(target) }] {
                expectCheckpointError(.notFound, messageContains: ["__0_0.distcp", "no .metadata", "never committed"]) { try open() }
            }
        }
    }

    @Test func truncatedMetadataIsAClearError() throws {
        try withTemporaryFolder { folder in
            let (target, _) = try Self.savedFolder(in: folder)
            let whole = try readBytes(target + "/.metadata")
            for length in [0, 1, 2, 20, whole.count / 2, whole.count - 1] {
                try writeBytes(Array(whole.prefix(length)), to: target + "/.metadata")
                expectCheckpointError(.malformed) { _ = try CheckpointFile.open(target) }
            }
        }
    }

    /// Random byte changes anywhere in a real `.metadata` (torch's, from the fixture) never
    /// crash or hang: each either still opens or throws a ``CheckpointError``.
    @Test func mutatedMetadataNeverCrashes() throws {
        try withTemporaryFolder { folder in
            let target = try DCPFixtures.copy("two-ranks", into: folder)
            let original = try readBytes(target + "/.metadata")
            var random = SplitMix64(seed: 0xDC9)
            var refused = 0
            for _ in 0..<300 {
                var bytes = original
                for _ in 0..<Int(1 + random.next() % 4) {
                    let index = Int(random.next() % UInt64(bytes.count))
                    switch random.next() % 3 {
                    case 0: bytes[index] = UInt8(truncatingIfNeeded: random.next())
                    case 1: bytes[index] ^= 1 << UInt8(random.next() % 8)
                    default: bytes.removeSubrange(index..<min(bytes.count, index + Int(random.next() % 16)))
                    }
                }
                try writeBytes(bytes, to: target + "/.metadata")
                do {
                    _ = try CheckpointFile.open(target)
                } catch {
                    refused += 1
                }
            }
            #expect(refused > 200, "most damage is caught by the pickle's structure")
        }
    }
}
