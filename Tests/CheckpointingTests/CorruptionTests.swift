import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// A flipped byte is caught: in a tensor, by its checksum, naming the tensor;
/// in the header, by the parser. Never a crash.
@Suite struct CorruptionTests {
    /// A state with tensors of several dtypes and sizes, some under keys that need escaping.
    private static func state() throws -> TrainingState {
        var state = composerLikeState(seed: 21)
        state.model["embed/shared\\table"] = .tensor(try Tensor(shape: [3, 2], scalars: [Double](repeating: 0.25, count: 6)))
        state.model["é.scale"] = .tensor(try Tensor(shape: [], scalars: [Float(2)]))
        state.model["mask"] = .tensor(try Tensor(shape: [5], scalars: [true, false, true, true, false]))
        return state
    }

    @Test func aFlippedByteInAnyTensorIsCaughtAndNamed() throws {
        let state = try Self.state()
        try withTemporaryFolder { folder in
            let original = try saveCheckpoint(state, filename: folder + "/good.safetensors")[0]
            let layout = try SafetensorsLayout(path: original)
            let pristine = try readBytes(original)
            let tensors = state.tree.tensors.filter { $0.tensor.byteCount > 0 }
            #expect(tensors.count == layout.entries.values.filter { $0.end > $0.begin }.count)
            #expect(tensors.count > 20)
            for (index, (name, tensor)) in tensors.enumerated() {
                let entry = try #require(layout.entries[name], "the header has no entry \"\(name)\"")
                // A different byte of each tensor: first, last, and in between.
                let within = index % 3 == 0 ? 0 : (index % 3 == 1 ? tensor.byteCount - 1 : tensor.byteCount / 2)
                let offset = layout.dataStart + entry.begin + within
                var bytes = pristine
                bytes[offset] ^= 0x10
                let damaged = folder + "/damaged-\(index).safetensors"
                try writeBytes(bytes, to: damaged)

                let loadError = expectCheckpointError(.checksumMismatch, messageContains: ["\"\(name)\""]) {
                    _ = try loadCheckpoint(damaged)
                }
                #expect(loadError?.path == damaged)
                var target = state
                expectCheckpointError(.checksumMismatch, messageContains: [name]) {
                    try loadCheckpoint(damaged, into: &target)
                }
                #expect(target == state, "a failed load leaves the state untouched")
                let file = try CheckpointFile.open(damaged)
                expectCheckpointError(.checksumMismatch, messageContains: ["\"\(name)\""]) { try file.verify() }

                // Without verification the load goes through, with exactly that byte changed.
                let unverified = try loadCheckpoint(damaged, verifyChecksums: false)
                let loaded = try #require(unverified.tree[path: name]?.tensorValue)
                var expected = tensor.bytes
                expected[within] ^= 0x10
                #expect(loaded.bytes == expected, "\(name)")
                try FileManager.default.removeItem(atPath: damaged)
            }
            // The original is still good.
            try CheckpointFile.open(original).verify()
        }
    }

    /// Large enough that verification checks the tensors (or records) on several threads.
    private static func parallelState() throws -> TrainingState {
        var state = TrainingState(runName: "parallel")
        for index in 0..<8 {
            let count = (1 << 18) + 1000 * index
            state.model["layer\(index).weight"] = .tensor(try Tensor(shape: [count], scalars: (0..<count).map { Float($0 % 977) * 0.5 + Float(index) }))
        }
        return state
    }

    @Test("checked on every core, verify still names the first damaged tensor in tree order")
    func parallelVerifyNamesTheFirstDamagedTensor() throws {
        let state = try Self.parallelState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors")[0]
            #expect(state.tree.tensors.reduce(0) { $0 + $1.tensor.byteCount } >= ParallelChecks.parallelThreshold)
            let layout = try SafetensorsLayout(path: path)
            let pristine = try readBytes(path)
            let names = state.tree.tensors.map(\.path).filter { $0.contains("layer") }
            #expect(names.count == 8)
            // The smallest tensor is checked last, the largest first: damage each pair.
            for (first, second) in [(0, 7), (6, 7), (2, 5), (7, 7)] {
                var bytes = pristine
                for name in Set([names[first], names[second]]) {
                    let entry = try #require(layout.entries[name])
                    bytes[layout.dataStart + entry.begin + 4 * first + 1] ^= 0x40
                }
                let damaged = folder + "/damaged.safetensors"
                try writeBytes(bytes, to: damaged)
                let error = expectCheckpointError(.checksumMismatch, messageContains: ["\"\(names[first])\""]) {
                    try CheckpointFile.open(damaged).verify()
                }
                #expect(error?.message.contains("\"\(names[second])\"") == (first == second))
            }
            try CheckpointFile.open(path).verify()
        }
    }

    @Test("checked on every core, a .pt file's first damaged record is the one named")
    func parallelTorchVerifyNamesTheFirstDamagedRecord() throws {
        let state = try Self.parallelState()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.pt")[0]
            let entries = try ZipArchive(MappedFile(path: path)).entries.filter { $0.record.hasPrefix("data/") }
            #expect(entries.count >= 8)
            let pristine = try readBytes(path)
            for (first, second) in [(0, 7), (6, 7), (3, 4)] {
                var bytes = pristine
                for entry in [entries[first], entries[second]] { bytes[entry.dataOffset + entry.size / 2] ^= 0x01 }
                let damaged = folder + "/damaged.pt"
                try writeBytes(bytes, to: damaged)
                expectCheckpointError(.checksumMismatch, messageContains: ["record \"\(entries[first].record)\""]) {
                    try CheckpointFile.open(damaged).verify()
                }
            }
            // The folder's .pt files are checked against Python's zipfile at the end.
            try FileManager.default.removeItem(atPath: folder + "/damaged.pt")
        }
    }

    @Test func aFlippedByteInTheHeaderNeverCrashes() throws {
        // A small state keeps the header short enough to try every byte of it.
        let state = TrainingState(
            model: ["w/1": .tensor(try Tensor(shape: [2, 2], scalars: [Float(1), 2, 3, 4])),
                    "b": .tensor(try Tensor(shape: [2], scalars: [Int64(-1), 1]))],
            optimizers: ["SGD": ["state": [0: ["momentum_buffer": .none]], "param_groups": [["lr": 0.1]]]],
            timestamp: Timestamp(epoch: 2, batch: 8, totalWct: .seconds(3)), rankZeroSeed: 17, runName: "flip",
            rng: [["torch": .tensor(try Tensor(shape: [4], scalars: [UInt8](arrayLiteral: 1, 2, 3, 4)))]])
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors")[0]
            let layout = try SafetensorsLayout(path: path)
            let pristine = try readBytes(path)
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            func put(_ byte: UInt8, at offset: Int) throws {
                try handle.seek(toOffset: UInt64(offset))
                try handle.write(contentsOf: [byte])
            }
            var refused = 0
            var tried = 0
            // Every byte of the length and the header, flipped in two ways: a low bit (ASCII stays
            // ASCII) and the top bit (which breaks UTF-8).
            for offset in 0..<layout.dataStart {
                for mask: UInt8 in [0x01, 0x80] {
                    try put(pristine[offset] ^ mask, at: offset)
                    tried += 1
                    do {
                        let file = try CheckpointFile.open(path)
                        try file.verify()
                        _ = try TrainingState(tree: file.tree)
                    } catch is CheckpointError {
                        refused += 1
                    }
                    try put(pristine[offset], at: offset)
                }
            }
            // Most flips break the structure; only a few (inside a string or number of the tree,
            // which no checksum covers) can go unnoticed.
            #expect(refused > tried / 2)
            try CheckpointFile.open(path).verify()
            #expect(try loadCheckpoint(path) == state)
        }
    }

    @Test(arguments: [
        ("the opening brace", "{"),
        ("a data_offsets digit", "\"data_offsets\":[0"),
        ("a dtype", "\"dtype\":\"F"),
        ("a checksum", "\"checksum_algorithm\""),
    ])
    func aFlippedStructuralByteIsRefused(what: String, anchor: String) throws {
        let state = try Self.state()
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(state, filename: folder + "/x.safetensors")[0]
            var bytes = try readBytes(path)
            let layout = try SafetensorsLayout(path: path)
            let header = Array(bytes[8..<layout.dataStart])
            let anchorBytes = Array(anchor.utf8)
            let start = try #require(
                (0...(header.count - anchorBytes.count)).first { Array(header[$0..<($0 + anchorBytes.count)]) == anchorBytes },
                "no \(anchor) in the header")
            // The last byte of the anchor: the brace, the digit 0, the F of the dtype, a quote.
            bytes[8 + start + anchorBytes.count - 1] ^= 0x04
            try writeBytes(bytes, to: path)
            #expect(throws: CheckpointError.self, "flipping \(what)") {
                let file = try CheckpointFile.open(path)
                try file.verify()
            }
        }
    }

    /// A native file whose tree files tensor "a" under the key "b" (its reference and its path
    /// disagree, which the writer never produces) must not escape verification: its recorded
    /// checksum is wrong, so opening or verifying it has to fail.
    @Test func aTensorFiledUnderAnotherPathIsStillVerified() throws {
        let bytes = HostileFile.native(tree: #"{"dict":[{"s":"b","v":{"tensor":"a"}}]}"#)
        try withTemporaryFolder { folder in
            let path = folder + "/moved.safetensors"
            try writeBytes(bytes, to: path)
            #expect(throws: CheckpointError.self, "a tensor with a wrong checksum passed verification") {
                try CheckpointFile.open(path).verify()
            }
            #expect(throws: CheckpointError.self) { _ = try loadCheckpoint(path) }
        }
    }

    @Test func aFlippedChecksumDigitNamesTheTensor() throws {
        let tree: StateValue = ["only": .tensor(try Tensor(shape: [4], scalars: [Int32(1), 2, 3, 4]))]
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(tree: tree, filename: folder + "/x.safetensors")[0]
            let layout = try SafetensorsLayout(path: path)
            let recorded = try #require(layout.metadata["checksums"])
            let digits = try #require(recorded.split(separator: "\"").map(String.init).first { $0.count == 16 })
            var bytes = try readBytes(path)
            let text = String(decoding: bytes[8..<layout.dataStart], as: UTF8.self)
            let range = try #require(text.range(of: digits))
            let offset = 8 + text.utf8.distance(from: text.startIndex, to: range.lowerBound)
            // A hex digit that stays a hex digit: 0-9 <-> 0-9 or a-f <-> a-f never needs more.
            bytes[offset] = bytes[offset] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            try writeBytes(bytes, to: path)
            let file = try CheckpointFile.open(path)
            expectCheckpointError(.checksumMismatch, messageContains: ["\"only\""]) { try file.verify() }
        }
    }
}
