import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Damaged and hostile torch files: truncated, bit-flipped, and hand-crafted zip archives and
/// pickles. Every one gives a clear ``CheckpointError``, never a crash, a hang or an allocation
/// larger than the file justifies.
@Suite struct TorchHostileInputTests {
    private final class Sink: ByteSink {
        var bytes: [UInt8] = []
        var position: Int { bytes.count }
        func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
    }

    /// A torch-style archive of these records (`archive/<name>`), as bytes, with its plan.
    private static func archive(_ records: [(String, [UInt8])]) throws -> (bytes: [UInt8], plan: ZipPlan) {
        let plan = ZipPlan(records.map { ("archive/" + $0.0, $0.1.count) })
        let sink = Sink()
        let writer = ZipStreamWriter(plan: plan, sink: sink)
        for (_, bytes) in records { try writer.writeRecord(bytes) }
        try writer.finish()
        return (sink.bytes, plan)
    }

    /// The offset of central directory entry `index` in an archive made by ``archive(_:)``.
    private static func centralEntry(_ plan: ZipPlan, _ index: Int) -> Int {
        plan.centralDirectoryOffset
            + plan.records.prefix(index).reduce(0) { $0 + ZipLayout.centralHeaderSize + $1.name.count + $1.centralZip64Length }
    }

    private static func patch<T: FixedWidthInteger>(_ bytes: inout [UInt8], at offset: Int, _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { for (index, byte) in $0.enumerated() { bytes[offset + index] = byte } }
    }

    /// Opens `bytes` as a file (named so the folder's `.pt` cross-check leaves it alone).
    private static func open(_ bytes: [UInt8], in folder: String, name: String = "damaged.bin") throws -> CheckpointFile {
        let path = folder + "/" + name
        try writeBytes(bytes, to: path)
        return try CheckpointFile.open(path)
    }

    /// A small valid pickle: `{"a": [1, (2.5, "x")], 3: None}`.
    private static let smallPickle: [UInt8] = [
        0x80, 0x02, 0x7D, 0x28, 0x58, 1, 0, 0, 0, 0x61, 0x5D, 0x28, 0x4B, 1, 0x47, 0x40, 0x04, 0, 0, 0, 0, 0, 0,
        0x58, 1, 0, 0, 0, 0x78, 0x86, 0x65, 0x4B, 3, 0x4E, 0x75, 0x2E,
    ]

    private static let version: [UInt8] = Array("3\n".utf8)

    // MARK: Damaged files

    @Test func everyTruncationIsAClearError() throws {
        let original = try readBytes(Fixtures.path("torch/nested_python_values.pt"))
        try withTemporaryFolder { folder in
            // Too short for the zip magic: not recognised at all.
            expectCheckpointError(.unsupportedFormat) { _ = try Self.open(Array(original.prefix(3)), in: folder) }
            for length in stride(from: 4, to: original.count, by: 3) {
                expectCheckpointError(.malformed) { _ = try Self.open(Array(original.prefix(length)), in: folder) }
            }
        }
    }

    @Test func bitFlipsAreCaughtByStructureOrCRC() throws {
        let original = try readBytes(Fixtures.path("composer/ep1-ba4-rank0.pt"))
        let records = try ZipArchive(MappedFile(path: Fixtures.path("composer/ep1-ba4-rank0.pt"))).entries
        try withTemporaryFolder { folder in
            var random = SplitMix64(seed: 0xB17F)
            var caught = 0
            for _ in 0..<300 {
                var bytes = original
                var flipped: [Int] = []
                for _ in 0..<(1 + Int(random.next() % 3)) {
                    let offset = Int(random.next() % UInt64(bytes.count))
                    bytes[offset] ^= UInt8(1) << (random.next() % 8)
                    flipped.append(offset)
                }
                let inRecord = flipped.contains { offset in
                    records.contains { offset >= $0.dataOffset && offset < $0.dataOffset + $0.size }
                }
                do {
                    let file = try Self.open(bytes, in: folder)
                    try file.verify()
                    #expect(!inRecord, "a flipped bit inside a record went unnoticed (offsets \(flipped))")
                } catch let error as CheckpointError {
                    caught += 1
                    #expect(!error.message.isEmpty)
                }
            }
            #expect(caught > 200)
        }
    }

    // MARK: The pickle

    /// Runs the unpickler on `pickle` against the storages of the nested-values fixture.
    private static func unpickle(_ pickle: [UInt8], limits: TorchLimits = .standard) throws -> StateValue {
        let archive = try ZipArchive(MappedFile(path: Fixtures.path("torch/nested_python_values.pt")))
        let storages = TorchStorageReader(archive: archive, bigEndian: false, limits: limits)
        return try pickle.withUnsafeBytes { raw in
            try Unpickler(raw, fileOffset: 0, storages: storages, limits: limits).load()
        }
    }

    @Test func smallPickleReads() throws {
        #expect(try Self.unpickle(Self.smallPickle) == ["a": [1, .tuple([2.5, "x"])], 3: .none])
    }

    @Test func mutatedPicklesNeverCrash() throws {
        let composer = try ZipArchive(MappedFile(path: Fixtures.path("composer/ep1-ba4-rank0.pt")))
        let nested = try ZipArchive(MappedFile(path: Fixtures.path("torch/nested_python_values.pt")))
        var random = SplitMix64(seed: 0x51CE)
        for (archive, rounds) in [(nested, 1500), (composer, 300)] {
            let original = Array(archive.bytes(of: try #require(archive.entry("data.pkl"))))
            for _ in 0..<rounds {
                var pickle = original
                switch random.next() % 4 {
                case 0:
                    for _ in 0..<(1 + random.next() % 4) { pickle[Int(random.next() % UInt64(pickle.count))] ^= UInt8(1) << (random.next() % 8) }
                case 1:
                    pickle[Int(random.next() % UInt64(pickle.count))] = UInt8(truncatingIfNeeded: random.next())
                case 2:
                    pickle.removeLast(Int(random.next() % UInt64(pickle.count)))
                default:
                    let at = Int(random.next() % UInt64(pickle.count))
                    pickle.insert(contentsOf: (0..<(1 + random.next() % 8)).map { _ in UInt8(truncatingIfNeeded: random.next()) }, at: at)
                }
                let storages = TorchStorageReader(archive: archive, bigEndian: false, limits: .standard)
                do {
                    _ = try pickle.withUnsafeBytes { raw in
                        try Unpickler(raw, fileOffset: 0, storages: storages, limits: .standard).load()
                    }
                } catch let error as CheckpointError {
                    #expect(!error.message.isEmpty)
                } catch {
                    Issue.record("not a CheckpointError: \(error)")
                }
            }
        }
        for _ in 0..<1000 {
            let noise = [0x80, 0x02] + (0..<(random.next() % 64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            do { _ = try Self.unpickle(noise) } catch let error as CheckpointError { #expect(!error.message.isEmpty) }
        }
    }

    /// Hand-crafted hostile pickles and the words their errors must use.
    static let hostilePickles: [(String, [UInt8], [String])] = {
        func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
        let stop: [UInt8] = [0x2E]
        var cases: [(String, [UInt8], [String])] = [
            ("a string longer than the pickle", [0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0x61] + stop, ["truncated"]),
            ("LONG1 past the end", [0x80, 0x02, 0x8A, 0xFF, 1, 2] + stop, ["truncated"]),
            ("REDUCE of a disallowed callable", global("builtins", "eval") + [0x58, 1, 0, 0, 0, 0x31, 0x85, 0x52] + stop, ["builtins.eval"]),
            ("REDUCE of os.system", global("os", "system") + [0x58, 2, 0, 0, 0, 0x6C, 0x73, 0x85, 0x52] + stop, ["os.system", "always refused"]),
            ("REDUCE of a string", [0x58, 1, 0, 0, 0, 0x61, 0x29, 0x52] + stop, ["not a function"]),
            ("REDUCE without an argument tuple", global("collections", "OrderedDict") + [0x4E, 0x52] + stop, ["argument tuple"]),
            ("BUILD on a list", [0x5D, 0x7D, 0x62] + stop, ["BUILD"]),
            ("APPEND to a dict", [0x7D, 0x4E, 0x61] + stop, ["not a list"]),
            ("SETITEM on a list", [0x5D, 0x4E, 0x4E, 0x73] + stop, ["not a dict"]),
            ("a float dict key", [0x7D, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0x4E, 0x73] + stop, ["dict key"]),
            ("popping an empty stack", [0x61] + stop, ["empty stack"]),
            ("STOP on an empty stack", stop, ["empty stack"]),
            ("no STOP", [0x80, 0x02, 0x4E], ["truncated"]),
            ("a memo entry never stored", [0x68, 7] + stop, ["memo"]),
            ("a list that contains itself", [0x5D, 0x71, 0, 0x68, 0, 0x61] + stop, ["contains itself"]),
            ("FRAME (protocol 4)", [0x80, 0x04, 0x95, 0, 0, 0, 0, 0, 0, 0, 0] + stop, ["FRAME"]),
            ("STACK_GLOBAL", [0x93] + stop, ["STACK_GLOBAL"]),
            ("a GLOBAL without a newline", [0x63] + Array(repeating: 0x41, count: 5000), ["GLOBAL"]),
            ("a persistent id that is not a storage", [0x58, 1, 0, 0, 0, 0x78, 0x85, 0x51] + stop, ["storage reference"]),
            ("a storage the archive lacks", [0x28, 0x58, 7, 0, 0, 0] + Array("storage".utf8) + global("torch", "FloatStorage")
                + [0x58, 2, 0, 0, 0, 0x39, 0x39, 0x58, 3, 0, 0, 0] + Array("cpu".utf8) + [0x4B, 1, 0x74, 0x51] + stop, ["data/99"]),
            ("a storage of the wrong size", [0x28, 0x58, 7, 0, 0, 0] + Array("storage".utf8) + global("torch", "FloatStorage")
                + [0x58, 1, 0, 0, 0, 0x30, 0x58, 3, 0, 0, 0] + Array("cpu".utf8) + [0x4B, 99, 0x74, 0x51] + stop, ["holds 24 bytes"]),
        ]
        // A tensor view of storage "0" (6 floats) with the given offset, size and stride.
        func view(offset: UInt8, size: [UInt8], stride: [UInt8]) -> [UInt8] {
            var bytes = global("torch._utils", "_rebuild_tensor_v2") + [0x28, 0x28, 0x58, 7, 0, 0, 0] + Array("storage".utf8)
            bytes += global("torch", "FloatStorage") + [0x58, 1, 0, 0, 0, 0x30, 0x58, 3, 0, 0, 0] + Array("cpu".utf8)
            bytes += [0x4B, 6, 0x74, 0x51, 0x4B, offset, 0x28] + size.flatMap { [0x4B, $0] } + [0x74, 0x28]
            bytes += stride.flatMap { [0x4B, $0] } + [0x74, 0x89] + global("collections", "OrderedDict") + [0x29, 0x52, 0x74, 0x52]
            return bytes + stop
        }
        cases.append(("a view past the end of its storage", view(offset: 4, size: [3], stride: [1]), ["reaches past the end"]))
        cases.append(("a broadcast view far larger than the file", view(offset: 0, size: [255, 255, 255, 255], stride: [0, 0, 0, 0]), ["memory"]))
        // 2^64 references through a memoized list doubled at each level.
        var laughs: [UInt8] = [0x5D, 0x71, 0]
        for level in 1...64 { laughs += [0x68, UInt8(level - 1), 0x68, UInt8(level - 1), 0x86, 0x71, UInt8(level)] }
        cases.append(("a billion laughs", laughs + stop, ["expands"]))
        cases.append(("a tuple nested 100000 deep", [0x4E] + Array(repeating: 0x85, count: 100_000) + stop, ["nested more than"]))
        cases.append(("100000 MARKs", Array(repeating: 0x28, count: 100_000) + stop, ["MARK"]))
        return cases
    }()

    @Test(arguments: hostilePickles.indices)
    func hostilePickleIsAClearError(_ index: Int) throws {
        let (name, pickle, words) = Self.hostilePickles[index]
        let error = expectCheckpointError(Self.expectedCode(words), messageContains: words) { _ = try Self.unpickle(pickle) }
        #expect(error?.offset != nil || words.contains("expands") || words.contains("nested more than") || words.contains("contains itself"), "\(name)")
    }

    private static func expectedCode(_ words: [String]) -> CheckpointError.Code {
        words.contains { $0.contains(".") && !$0.contains(" ") } ? .disallowedGlobal : .malformed
    }

    @Test func memoFloodStopsAtTheLimit() throws {
        var limits = TorchLimits.standard
        limits.maximumMemoEntries = 1000
        var pickle: [UInt8] = [0x4E]
        for index in 0..<2000 { pickle += [0x72] + withUnsafeBytes(of: UInt32(index).littleEndian, Array.init) }
        expectCheckpointError(.limitExceeded, messageContains: ["memo", "1000", "maximumMemoEntries"]) { _ = try Self.unpickle(pickle + [0x2E], limits: limits) }
        // Rewriting one entry over and over is not a flood.
        let rewrite: [UInt8] = [0x4E] + Array(repeating: [UInt8]([0x71, 5]), count: 5000).flatMap { $0 } + [0x2E]
        #expect(try Self.unpickle(rewrite, limits: limits) == .none)
    }

    // MARK: The zip archive

    private static func validArchive() throws -> (bytes: [UInt8], plan: ZipPlan) {
        try archive([("data.pkl", smallPickle), ("byteorder", Array("little".utf8)), ("data/0", [UInt8](repeating: 7, count: 100)), ("version", version)])
    }

    @Test func handCraftedArchivesAreClearErrors() throws {
        try withTemporaryFolder { folder in
            let (valid, plan) = try Self.validArchive()
            #expect(try Self.open(valid, in: folder).tree == ["a": [1, .tuple([2.5, "x"])], 3: .none])
            let dataEntry = Self.centralEntry(plan, 2)
            let endRecord = valid.count - ZipLayout.endRecordSize
            let zip64End = plan.centralDirectoryOffset + plan.centralDirectorySize

            var outside = valid
            Self.patch(&outside, at: dataEntry + 42, UInt32(valid.count + 100))
            expectCheckpointError(.malformed, messageContains: ["outside"]) { _ = try Self.open(outside, in: folder) }

            var overlapping = valid
            Self.patch(&overlapping, at: dataEntry + 20, UInt32(150))
            Self.patch(&overlapping, at: dataEntry + 24, UInt32(150))
            expectCheckpointError(.malformed, messageContains: ["overlap"]) { _ = try Self.open(overlapping, in: folder) }

            var pastDirectory = valid
            Self.patch(&pastDirectory, at: dataEntry + 20, UInt32(1 << 30))
            Self.patch(&pastDirectory, at: dataEntry + 24, UInt32(1 << 30))
            expectCheckpointError(.malformed, messageContains: ["past the start of the central directory"]) { _ = try Self.open(pastDirectory, in: folder) }

            var compressed = valid
            Self.patch(&compressed, at: dataEntry + 10, UInt16(8))
            expectCheckpointError(.unsupportedFormat, messageContains: ["compressed"]) { _ = try Self.open(compressed, in: folder) }

            var encrypted = valid
            Self.patch(&encrypted, at: dataEntry + 8, UInt16(0x0809))
            expectCheckpointError(.unsupportedFormat, messageContains: ["encrypted"]) { _ = try Self.open(encrypted, in: folder) }

            var badZip64Offset = valid
            Self.patch(&badZip64Offset, at: endRecord - 20 + 8, UInt64.max)
            expectCheckpointError(.malformed, messageContains: ["zip64 end record offset"]) { _ = try Self.open(badZip64Offset, in: folder) }

            var hugeCount = valid
            Self.patch(&hugeCount, at: zip64End + 24, UInt64(1) << 40)
            Self.patch(&hugeCount, at: zip64End + 32, UInt64(1) << 40)
            expectCheckpointError(.limitExceeded, messageContains: ["entries", "maximumDirectoryEntries"]) { _ = try Self.open(hugeCount, in: folder) }

            var hugeDirectory = valid
            Self.patch(&hugeDirectory, at: zip64End + 40, UInt64.max - 10)
            expectCheckpointError(.malformed, messageContains: ["central directory"]) { _ = try Self.open(hugeDirectory, in: folder) }

            var renamed = valid
            renamed[plan.records[2].localHeaderOffset + 30 + 9] ^= 1
            expectCheckpointError(.malformed, messageContains: ["different name"]) { _ = try Self.open(renamed, in: folder) }

            expectCheckpointError(.malformed, messageContains: ["end of central directory"]) {
                _ = try Self.open(Array(valid.dropLast(5)), in: folder)
            }
        }
    }

    @Test func archivesThatAreNotTorchCheckpointsSayWhatTheyAre() throws {
        try withTemporaryFolder { folder in
            let (duplicate, _) = try Self.archive([("data.pkl", Self.smallPickle), ("data.pkl", Self.smallPickle)])
            expectCheckpointError(.malformed, messageContains: ["twice"]) { _ = try Self.open(duplicate, in: folder) }
            let (noPickle, _) = try Self.archive([("version", Self.version)])
            expectCheckpointError(.malformed, messageContains: ["data.pkl"]) { _ = try Self.open(noPickle, in: folder) }
            let (script, _) = try Self.archive([("data.pkl", Self.smallPickle), ("constants.pkl", Self.smallPickle)])
            expectCheckpointError(.unsupportedFormat, messageContains: ["TorchScript"]) { _ = try Self.open(script, in: folder) }
            let preview = Array("PYTORCH1".utf8) + [UInt8](repeating: 0, count: 100)
            expectCheckpointError(.unsupportedFormat, messageContains: ["PYTORCH1"]) { _ = try Self.open(preview, in: folder) }
            var bigEndian = try Self.archive([("data.pkl", Self.smallPickle), ("byteorder", Array("middle".utf8))]).bytes
            expectCheckpointError(.malformed, messageContains: ["byteorder"]) { _ = try Self.open(bigEndian, in: folder) }
            bigEndian = []
        }
    }

    @Test func bigEndianStoragesAreSwapped() throws {
        try withTemporaryFolder { folder in
            // The nested-values fixture's pickle over big-endian copies of its storages.
            let source = try ZipArchive(MappedFile(path: Fixtures.path("torch/nested_python_values.pt")))
            func record(_ name: String) throws -> [UInt8] { Array(source.bytes(of: try #require(source.entry(name)))) }
            func swapped(_ bytes: [UInt8]) -> [UInt8] { stride(from: 0, to: bytes.count, by: 4).flatMap { bytes[$0..<($0 + 4)].reversed() } }
            let (bytes, _) = try Self.archive([
                ("data.pkl", try record("data.pkl")), ("byteorder", Array("big".utf8)),
                ("data/0", swapped(try record("data/0"))), ("data/1", swapped(try record("data/1"))), ("version", Self.version),
            ])
            let tree = try Self.open(bytes, in: folder).tree
            let expected = try CheckpointFile.open(Fixtures.path("torch/nested_python_values.pt")).tree
            #expect(tree == expected)
            #expect(tree[path: "model/layer.weight"]?.tensorValue?.storage == .owned)
        }
    }
}
