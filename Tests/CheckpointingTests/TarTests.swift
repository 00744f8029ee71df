import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The tar reader and writer: GNU tar reads what we write, we read what GNU tar and Python
/// write, and hostile archives built here (traversal, absolute paths, links, devices, lying
/// sizes, damaged headers) are refused with a message naming the member.
@Suite struct TarTests {
    /// A seekable in-memory sink, like a local file.
    final class SeekableMemorySink: SeekableByteSink {
        var bytes: [UInt8] = []
        var position: Int { bytes.count }
        func write(_ chunk: UnsafeRawBufferPointer) throws(CheckpointError) { bytes.append(contentsOf: chunk) }
        func write(_ chunk: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
            for (index, byte) in chunk.enumerated() { bytes[offset + index] = byte }
        }
    }

    /// An archive of `members` (name and bytes) written by ``TarWriter``.
    static func archive(_ members: [(String, [UInt8])], into sink: any ByteSink = CollectingSink()) throws -> [UInt8] {
        let writer = TarWriter(sink: sink)
        for (name, data) in members {
            try writer.writeMember(name: name, size: data.count) { member throws(CheckpointError) in try member.write(data) }
        }
        try writer.finish()
        return (sink as? CollectingSink)?.bytes ?? (sink as! SeekableMemorySink).bytes
    }

    /// The bytes of each file member of an archive, by name.
    static func contents(of archive: [UInt8]) throws -> [String: [UInt8]] {
        try archive.withUnsafeBytes { raw in
            var result: [String: [UInt8]] = [:]
            for member in try TarReader.members(of: raw) where member.kind == .file {
                result[member.name] = Array(raw[member.dataOffset..<(member.dataOffset + member.size)])
            }
            return result
        }
    }

    static let longName = String(repeating: "folder/", count: 20) + "composer_states.pt"
    static let unicodeName = "données/état-🙂.safetensors"

    @Test("GNU tar lists and extracts what we write: short, long (pax) and non-ASCII names")
    func gnuTarReadsOurArchives() throws {
        try withTemporaryFolder { folder in
            let members = [
                ("checkpoint.safetensors", weightLikeBytes(count: 10_000, seed: 1)),
                (Self.longName, Array("long".utf8)), (Self.unicodeName, []),
            ]
            let path = folder + "/a.tar"
            try writeBytes(try Self.archive(members), to: path)
            let listing = try runTool(["tar", "-tf", path])
            #expect(listing.status == 0, "\(listing.stderr)")
            #expect(String(decoding: listing.stdout, as: UTF8.self) == members.map { $0.0 + "\n" }.joined())
            for (name, data) in members {
                let extracted = try runTool(["tar", "-xOf", path, name])
                #expect(extracted.status == 0, "\(extracted.stderr)")
                #expect(digest(extracted.stdout) == digest(data), "\(name)")
            }
        }
    }

    @Test("we read GNU tar's gnu, pax and ustar formats, long names included", arguments: ["gnu", "pax", "ustar"])
    func weReadGnuTar(format: String) throws {
        try withTemporaryFolder { folder in
            let root = folder + "/in"
            // ustar splits a long name at a '/' into its 155-byte prefix; gnu and pax use their own headers.
            let long = String(repeating: "sub/", count: 30) + "deep.bin"
            try FileManager.default.createDirectory(
                atPath: root + "/" + (long as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let files = ["checkpoint.safetensors": weightLikeBytes(count: 5000, seed: 2), long: Array("deep".utf8), "empty": []]
            for (name, data) in files { try writeBytes(data, to: root + "/" + name) }
            let path = folder + "/t.tar"
            let run = try runTool(["tar", "--format=\(format)", "-cf", path, "-C", root] + files.keys.sorted())
            try #require(run.status == 0, "\(run.stderr)")
            let read = try Self.contents(of: try readBytes(path))
            #expect(read.keys.sorted() == files.keys.sorted())
            for (name, data) in files { #expect(digest(read[name] ?? [1]) == digest(data), "\(name)") }
        }
    }

    @Test("Composer's tar (Python's tarfile: a root folder entry \"/\" and pax mtimes) reads, its root ignored")
    func composerFixture() throws {
        let bytes = try readBytes(Fixtures.path("composer/ep1-ba4-rank0.tar"))
        let members = try bytes.withUnsafeBytes { try TarReader.members(of: $0) }
        #expect(members.map(\.name) == ["", "composer_states.pt"])
        #expect(members.map(\.kind) == [.directory, .file])
        #expect(members.last?.size == 22192)
        let plain = try readBytes(Fixtures.path("composer/ep1-ba4-rank0.pt"))
        #expect(digest(try Self.contents(of: bytes)["composer_states.pt"] ?? []) == digest(plain))
    }

    @Test("sizes over 8 GiB go in a pax header, which the reader applies (and then finds the data missing)")
    func hugeSize() throws {
        let size = 9 << 30
        let headers = TarWriter.headers(name: "composer_states.pt", size: size, mtime: 0).flatMap { $0 }
        #expect(headers.count == 3 * 512)
        #expect(String(decoding: headers[512..<1024], as: UTF8.self).contains("size=\(size)\n"))
        let reader = TarReader()
        try headers.withUnsafeBytes { try reader.write($0) }
        #expect(reader.members.first?.size == size)
        expectCheckpointError(.malformed, messageContains: ["composer_states.pt", "claims \(size) bytes"]) {
            try reader.finish()
        }
        // GNU tar agrees on the size.
        try withTemporaryFolder { folder in
            try writeBytes(headers + [UInt8](repeating: 0, count: 1024), to: folder + "/huge.tar")
            let listing = try runTool(["tar", "-tvf", folder + "/huge.tar"])
            #expect(String(decoding: listing.stdout, as: UTF8.self).contains(String(size)))
        }
    }

    @Test("numeric fields: octal with spaces or NULs, GNU base-256, garbage refused")
    func numbers() {
        func number(_ bytes: [UInt8]) -> Int? { bytes.withUnsafeBytes { TarHeader.number($0) } }
        #expect(number(Array("00000000017\0".utf8)) == 15)
        #expect(number(Array("     17 \0".utf8)) == 15)
        #expect(number([0x80, 0, 0, 0, 0, 0, 0, 2, 0x40, 0, 0, 0]) == 9 << 30)
        #expect(number([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
        #expect(number(Array("12x4".utf8)) == nil)
        #expect(number(Array("1 2".utf8)) == nil)
    }

    /// A hand-built archive: each entry is a header (any name, type and declared size) and data.
    static func handBuilt(_ entries: [(name: String, kind: TarHeader.Kind, declared: Int, data: [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = []
        for entry in entries {
            bytes += TarHeader.make(name: entry.name, size: entry.declared, kind: entry.kind, mtime: 0)
            bytes += entry.data + [UInt8](repeating: 0, count: TarHeader.padding(after: entry.data.count))
        }
        return bytes + [UInt8](repeating: 0, count: 1024)
    }

    /// An archive built to attack the reader, named by what it tries.
    struct HostileArchive: CustomTestStringConvertible, Sendable {
        var label: String
        var bytes: [UInt8]
        var code: CheckpointError.Code
        var fragments: [String]
        var testDescription: String { label }
    }

    static let hostile: [HostileArchive] = [
        HostileArchive(label: "../evil.pt", bytes: handBuilt([("../evil.pt", .file, 3, [1, 2, 3])]), code: .malformed, fragments: ["../evil.pt", "\"..\""]),
        HostileArchive(label: "a/../../evil", bytes: handBuilt([("a/../../evil", .file, 1, [1])]), code: .malformed, fragments: ["\"..\""]),
        HostileArchive(
            label: "absolute file", bytes: handBuilt([("/etc/cron.d/evil", .file, 1, [1])]), code: .malformed,
            fragments: ["/etc/cron.d/evil", "absolute"]),
        HostileArchive(label: "absolute folder", bytes: handBuilt([("/etc/", .directory, 0, [])]), code: .malformed, fragments: ["absolute"]),
        HostileArchive(
            label: "symbolic link", bytes: handBuilt([("composer_states.pt", .symbolicLink, 0, [])]), code: .malformed,
            fragments: ["symbolic link"]),
        HostileArchive(
            label: "hard link", bytes: handBuilt([("checkpoint.safetensors", .hardLink, 0, [])]), code: .malformed, fragments: ["hard link"]),
        HostileArchive(label: "device", bytes: handBuilt([("sda", .blockDevice, 0, [])]), code: .malformed, fragments: ["device"]),
        HostileArchive(label: "fifo", bytes: handBuilt([("pipe", .fifo, 0, [])]), code: .malformed, fragments: ["FIFO"]),
        HostileArchive(
            label: "lying size",
            bytes: Array(handBuilt([("composer_states.pt", .file, 1 << 20, weightLikeBytes(count: 1000, seed: 3))]).dropLast(1024)),
            code: .malformed, fragments: ["composer_states.pt", "claims 1048576 bytes"]),
    ]

    @Test("hostile archives are refused with a message naming the problem", arguments: hostile)
    func hostileArchives(archive: HostileArchive) {
        expectCheckpointError(archive.code, messageContains: archive.fragments) {
            _ = try archive.bytes.withUnsafeBytes { try TarReader.members(of: $0) }
        }
    }

    @Test("a member type the reader does not know (GNU sparse) is refused as unsupported")
    func unknownType() {
        var header = TarHeader.make(name: "sparse", size: 0, kind: .file, mtime: 0)
        header[156] = UInt8(ascii: "S")
        // Recompute the checksum for the new type.
        for index in 148..<156 { header[index] = UInt8(ascii: " ") }
        let sum = String(header.reduce(0) { $0 + Int($1) }, radix: 8)
        for (index, byte) in (String(repeating: "0", count: 6 - sum.count) + sum).utf8.enumerated() { header[148 + index] = byte }
        header[154] = 0
        expectCheckpointError(.unsupportedFormat, messageContains: ["type 'S'"]) {
            _ = try (header + [UInt8](repeating: 0, count: 1024)).withUnsafeBytes { try TarReader.members(of: $0) }
        }
    }

    @Test("a damaged header and an archive cut inside a header are refused")
    func damagedHeaders() throws {
        var archive = try Self.archive([("checkpoint.safetensors", [1, 2, 3])])
        expectCheckpointError(.malformed, messageContains: ["truncated inside a header"]) {
            _ = try Array(archive.prefix(300)).withUnsafeBytes { try TarReader.members(of: $0) }
        }
        archive[10] ^= 1
        expectCheckpointError(.malformed, messageContains: ["checksum"]) {
            _ = try archive.withUnsafeBytes { try TarReader.members(of: $0) }
        }
    }

    @Test("a member's bytes stream out of a .tar.gz as it is decompressed, without the archive on disk")
    func streamingRead() throws {
        try withTemporaryFolder { folder in
            let data = weightLikeBytes(count: 1 << 20, seed: 4)
            try writeBytes(data, to: folder + "/checkpoint.safetensors")
            let path = folder + "/a.tar.gz"
            try #require(try runTool(["tar", "-czf", path, "-C", folder, "checkpoint.safetensors"]).status == 0)
            let collected = CollectingSink()
            let reader = TarReader { member in member.name == "checkpoint.safetensors" ? collected : nil }
            let gunzip = try CompressionCodec.gzip.decompressor(into: reader)
            try feed(try readBytes(path), to: gunzip, seed: 5)
            try gunzip.finish()
            try reader.finish()
            #expect(digest(collected.bytes) == digest(data))
        }
    }

    @Test("a member written through a seekable archive can fill in bytes it wrote earlier, inside the member only")
    func seekableMember() throws {
        let sink = SeekableMemorySink()
        try sink.write([9, 9, 9])
        let writer = TarWriter(sink: sink)
        try writer.writeMember(name: "m", size: 4) { member throws(CheckpointError) in
            guard let seekable = member as? any SeekableByteSink else {
                Issue.record("the member sink of a seekable archive is not seekable")
                return
            }
            try member.write([0, 0, 0, 0])
            try rethrowingCheckpointError { try [UInt8]([7, 8]).withUnsafeBytes { try seekable.write($0, at: 1) } }
            #expect(throws: CheckpointError.self) { try [UInt8]([1]).withUnsafeBytes { try seekable.write($0, at: 4) } }
        }
        try writer.finish()
        let contents = try Self.contents(of: Array(sink.bytes.dropFirst(3)))
        #expect(contents["m"] == [0, 7, 8, 0])
    }

    @Test("a member writer that writes more or fewer bytes than declared is stopped")
    func wrongSizes() throws {
        let writer = TarWriter(sink: CollectingSink())
        expectCheckpointError(.invalidArgument, messageContains: ["more bytes"]) {
            try writer.writeMember(name: "m", size: 2) { member throws(CheckpointError) in try member.write([1, 2, 3]) }
        }
        expectCheckpointError(.invalidArgument, messageContains: ["declared as 2 bytes but 1"]) {
            try writer.writeMember(name: "m", size: 2) { member throws(CheckpointError) in try member.write([1]) }
        }
    }
}
