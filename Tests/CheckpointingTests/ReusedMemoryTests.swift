import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The decoded memory of float-split files, kept and reused from one file to the next: a file
/// never shows bytes of another, whether it decodes cleanly, fails, or is read only in part.
/// Each test gives its own ``ReusedMemory``, so tests running at once do not take its mappings.
@Suite struct ReusedMemoryTests {
    static let tensor = "w"

    /// A tree of one float32 tensor of several chunks; seeds give trees of the same layout.
    static func tree(seed: UInt64) -> StateValue {
        .dict([.string(tensor): .tensor(FloatSplitCodecTests.weights(.float32, count: 700_000, seed: seed))])
    }

    static func bytes(_ tree: StateValue) throws -> [UInt8] {
        let tensor = try #require(tree[path: Self.tensor]?.tensorValue)
        return tensor.withUnsafeBytes { Array($0) }
    }

    @Test("the two most recent mappings are kept; a smaller request takes the smallest that fits, trimmed")
    func keepsAndTrims() throws {
        let memory = ReusedMemory()
        let page = ReusedMemory.mappedSize(1)
        let sizes = [3 * page, 8 * page + 1, 5 * page]
        var bases: [UnsafeMutableRawPointer] = []
        for size in sizes {
            let (base, reused) = try memory.take(size: size, path: "test")
            #expect(!reused)
            base.initializeMemory(as: UInt8.self, repeating: 0xAB, count: size)
            bases.append(base)
        }
        for (base, size) in zip(bases, sizes) { memory.give(base, size: size, path: "test") }
        #expect(memory.keptSizes == [9 * page, 5 * page])

        let (taken, reused) = try memory.take(size: 4 * page, path: "test")
        #expect(taken == bases[2] && reused)
        #expect(memory.keptSizes == [9 * page])
        // Writable over the size asked for, whatever it held.
        taken.initializeMemory(as: UInt8.self, repeating: 1, count: 4 * page)
        memory.give(taken, size: 4 * page, path: "test")
        #expect(memory.keptSizes == [9 * page, 4 * page])

        let (larger, reusedLarger) = try memory.take(size: 6 * page, path: "test")
        #expect(larger == bases[1] && reusedLarger)
        larger.initializeMemory(as: UInt8.self, repeating: 2, count: 6 * page)
        memory.give(larger, size: 6 * page, path: "test")
        memory.releaseAll()
        #expect(memory.keptSizes.isEmpty)
    }

    @Test("a damaged chunk decoded into another file's memory reads as zeros, never as that file's bytes")
    func failedChunkShowsNoEarlierBytes() throws {
        try withTemporaryFolder { folder in
            let first = Self.tree(seed: 1), second = Self.tree(seed: 2)
            let firstPath = try saveCheckpoint(tree: first, filename: folder + "/first.safetensors.fsz")[0]
            let secondPath = try saveCheckpoint(tree: second, filename: folder + "/second.safetensors.fsz")[0]
            let damaged = folder + "/second-damaged.fsz"
            // The tensor's last chunk: its first shares the header's first bytes, which opening decodes.
            do {
                let file = try CheckpointFile.open(secondPath)
                let chunk = try #require(try FloatSplitCodecTests.chunks(of: file) { $0 == Self.tensor }.max())
                let entry = try #require(file.floatSplit).index.entries[chunk]
                var bytes = try readBytes(secondPath)
                bytes[entry.recordOffset + entry.recordLength / 2] ^= 0x20
                try writeBytes(bytes, to: damaged)
            }

            let memory = ReusedMemory()
            try ReusedMemory.$current.withValue(memory) {
                var firstBase: UnsafeRawPointer?
                do {
                    let file = try CheckpointFile.open(firstPath)
                    try file.decode { _ in true }
                    #expect(try Self.bytes(file.tree) == Self.bytes(first))
                    firstBase = file.floatSplit?.base
                }
                #expect(memory.keptSizes.count == 1)

                let file = try CheckpointFile.open(damaged)
                let archive = try #require(file.floatSplit)
                #expect(archive.base == firstBase, "the second file reuses the first one's memory")
                expectCheckpointError(.malformed, messageContains: ["chunk decodes to bytes that hash"]) { try file.decode { _ in true } }

                // Expected: the second file's bytes, with the damaged chunk's zeroed.
                var expected = try Self.bytes(second)
                let tensor = try #require(file.tree[path: Self.tensor]?.tensorValue)
                let view = try #require(tensor.buffer.encodedView)
                let tensorStart = view.bytes.baseAddress! - archive.base!
                let failed = try #require(archive.index.entries.indices.first { !archive.isDecoded($0) })
                let entry = archive.index.entries[failed]
                expected.replaceSubrange(
                    (entry.decodedOffset - tensorStart)..<(entry.decodedOffset - tensorStart + entry.decodedLength),
                    with: repeatElement(0, count: entry.decodedLength))
                #expect(tensor.withUnsafeBytes { Array($0) } == expected)
            }
            #expect(memory.keptSizes.count == 1)
        }
    }

    @Test("memory goes back only when the last tensor of its file goes; a later file's tensors are its own")
    func liveTensorsKeepTheirMemory() throws {
        try withTemporaryFolder { folder in
            let first = Self.tree(seed: 3), second = Self.tree(seed: 4)
            let firstPath = try saveCheckpoint(tree: first, filename: folder + "/first.safetensors.fsz")[0]
            let secondPath = try saveCheckpoint(tree: second, filename: folder + "/second.safetensors.fsz")[0]
            let memory = ReusedMemory()
            try ReusedMemory.$current.withValue(memory) {
                var kept = try #require(try CheckpointFile.open(firstPath).tree[path: Self.tensor]?.tensorValue)
                #expect(memory.keptSizes.isEmpty, "a tensor of the first file still uses its memory")

                // The second file is read a tensor at a time, as a load reads what it keeps.
                let file = try CheckpointFile.open(secondPath)
                #expect(try Self.bytes(file.tree) == Self.bytes(second))
                #expect(kept.withUnsafeBytes { Array($0) } == (try Self.bytes(first)))

                kept = try #require(second[path: Self.tensor]?.tensorValue)
                #expect(memory.keptSizes.count == 1)
                // The third open takes the first file's memory, and reads only what it decodes.
                let third = try CheckpointFile.open(firstPath)
                #expect(memory.keptSizes.isEmpty)
                try third.verify()
                #expect(try Self.bytes(third.tree) == Self.bytes(first))
                #expect(try Self.bytes(file.tree) == Self.bytes(second))
            }
        }
    }

    @Test("releaseKeptDecodeMemory unmaps what decoded files left, and the next decode maps afresh")
    func keptMemoryIsReleasedOnRequest() throws {
        try withTemporaryFolder { folder in
            let first = Self.tree(seed: 5)
            let path = try saveCheckpoint(tree: first, filename: folder + "/first.safetensors.fsz")[0]
            let expected = try Self.bytes(first)
            let memory = ReusedMemory()
            try ReusedMemory.$current.withValue(memory) {
                let decoded = try Self.bytes(CheckpointFile.open(path).tree)
                #expect(decoded == expected)
                #expect(memory.keptSizes.count == 1, "the decoded file's memory is kept once its tensors are gone")
                CheckpointFile.releaseKeptDecodeMemory()
                #expect(memory.keptSizes.isEmpty)
                let again = try Self.bytes(CheckpointFile.open(path).tree)
                #expect(again == expected)
                #expect(memory.keptSizes.count == 1)
            }
        }
    }
}
