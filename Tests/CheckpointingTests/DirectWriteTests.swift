import CheckpointingTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import Checkpointing

/// Files written past ``AtomicFileWriter/directThreshold`` go to the disk with direct I/O
/// (``DirectWriter``): the same bytes as through the page cache, whatever the sizes of the
/// writes and overwrites, and the page cache where direct I/O is refused. The tests shrink the
/// threshold and the staging buffers so small files cross many buffers. Faults at every call of
/// direct saves are in ``FaultInjectionTests``.
@Suite struct DirectWriteTests {
    /// Runs `body` writing directly past `threshold` bytes, through `buffer`-byte staging buffers.
    static func direct<R>(from threshold: Int = 0, buffer: Int = 64 << 10, _ body: () throws -> R) rethrows -> R {
        try AtomicFileWriter.$directThreshold.withValue(threshold) {
            try DirectWriter.$bufferSize.withValue(buffer, operation: body)
        }
    }

    /// `count` bytes that differ at every offset.
    static func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    @Test("appends of every size and overwrites before, inside and across the staging buffer give the expected file")
    func appendsAndOverwrites() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/x.bin"
            var expected: [UInt8] = []
            let written = try Self.direct(from: 10_000, buffer: 16 << 10) { () throws -> Bool in
                let writer = try AtomicFileWriter(path: path)
                var random = SplitMix64(seed: 7)
                var seed: UInt64 = 0
                func overwrite(at offset: Int, count: Int) throws {
                    seed += 1
                    let bytes = Self.pattern(count, seed: 1000 + seed)
                    try bytes.withUnsafeBytes { try writer.write($0, at: offset) }
                    expected.replaceSubrange(offset..<(offset + count), with: bytes)
                }
                // Pieces from 1 byte to several buffers long, so appends cross the threshold and
                // every buffer boundary at every alignment.
                while expected.count < 300_000 {
                    seed += 1
                    let bytes = Self.pattern(Int(random.next() % 40_000) + 1, seed: seed)
                    try writer.write(bytes)
                    expected += bytes
                    // Now and then, overwrite bytes already on the disk, still staged, or both.
                    if random.next() % 3 == 0 {
                        let count = Int(random.next() % 20_000) + 1
                        try overwrite(at: Int(random.next() % UInt64(expected.count - count + 1)), count: count)
                    }
                }
                #expect(writer.position == expected.count)
                // The page-cache part, the direct part, and a range across the two.
                try overwrite(at: 0, count: 100)
                try overwrite(at: expected.count - 50, count: 50)
                try overwrite(at: 9_000, count: 4_000)
                let direct = writer.wroteDirectly
                try writer.commit()
                return direct
            }
            #expect(written, "ext4 and the other local file systems CI uses take O_DIRECT")
            #expect(try readBytes(path) == expected)
            #expect(try folderContents(folder) == ["x.bin"])
        }
    }

    @Test("a save written directly holds the same bytes as one written through the page cache",
          arguments: ["x.safetensors", "x.pt", "x.pt.zst", "x.tar", "x.safetensors.fsz"])
    func sameBytesAsThePageCache(name: String) throws {
        try withTemporaryFolder { folder in
            let state = try FaultInjectionTests.state(seed: 11, large: true)
            let cached = folder + "/cached-" + name, direct = folder + "/direct-" + name
            try saveCheckpoint(state, filename: cached)
            try Self.direct { try saveCheckpoint(state, filename: direct) }
            try Self.direct(from: 100_000) { try saveCheckpoint(state, filename: folder + "/half-" + name) }
            #expect(try readBytes(direct) == readBytes(cached))
            #expect(try readBytes(folder + "/half-" + name) == readBytes(cached))
            let file = try CheckpointFile.open(direct)
            try file.verify()
            #expect(file.tree == (try CheckpointFile.open(cached).tree))
        }
    }

    @Test("a file system that refuses O_DIRECT, or a device that refuses a direct write, gets the page cache")
    func refusalsFallBackToThePageCache() throws {
        try withTemporaryFolder { folder in
            let state = try FaultInjectionTests.state(seed: 12, large: true)
            try saveCheckpoint(state, filename: folder + "/cached.safetensors")
            let expected = try readBytes(folder + "/cached.safetensors")
            let path = folder + "/x.safetensors"
            let temporary: @Sendable (String) -> Bool = { $0.contains(".partial-") }
            // The second open of the temporary is the one with O_DIRECT (tmpfs refuses it so).
            let (opened, openTrace) = SyscallFaults.run(under: folder, failing: [.init(.open, call: 2, errno: EINVAL, paths: temporary)]) {
                try Self.direct { try saveCheckpoint(state, filename: path) }
            }
            _ = try opened.get()
            #expect(openTrace.injected.count == 1)
            #expect(try readBytes(path) == expected)
            // A device with blocks larger than 4 KB refuses the first direct write with EINVAL.
            let (written, writeTrace) = SyscallFaults.run(under: folder, failing: [.init(.pwrite, call: 1, errno: EINVAL, paths: temporary)]) {
                try Self.direct { try saveCheckpoint(state, filename: path) }
            }
            _ = try written.get()
            #expect(writeTrace.injected.count == 1)
            #expect(try readBytes(path) == expected)
            #expect(try folderContents(folder).sorted() == ["cached.safetensors", "x.safetensors"])
        }
    }

    @Test("a direct save that fails in the background thread reports it, and leaves the previous file")
    func backgroundFailureIsReported() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/x.safetensors"
            try saveCheckpoint(try FaultInjectionTests.state(seed: 13), filename: path)
            let previous = try readBytes(path)
            let next = try FaultInjectionTests.state(seed: 14, large: true)
            // Every direct write fails: the first is one of the background thread's.
            let (result, trace) = SyscallFaults.run(under: folder, failing: [.init(.pwrite, calls: { _ in true }, errno: EIO)]) {
                try Self.direct { try saveCheckpoint(next, filename: path) }
            }
            let error = try #require(result.failureAsCheckpointError)
            #expect(error.path == path)
            #expect(error.message.contains("I/O error") && error.message.contains("not saved"), "\(error.message)")
            #expect(trace.injected.count == 1, "the save stops at the first failure: \(trace.injected)")
            #expect(try readBytes(path) == previous)
            #expect(try folderContents(folder) == ["x.safetensors"])
        }
    }
}
