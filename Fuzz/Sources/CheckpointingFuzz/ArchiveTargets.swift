@testable import Checkpointing

/// Tar archives: headers, pax and GNU extensions, member paths and sizes.
enum ArchiveTargets {
    static let tar = FuzzTarget(
        name: "tar",
        summary: "TarReader: ustar, pax and GNU headers, paths, sizes; the archive whole and in pieces must give the same members and bytes",
        fixtures: ["composer/*.tar"],
        seeds: {
            let sink = MemorySink()
            let native = Seeds.native(Seeds.smallTree)
            FuzzCheck.succeeds("writing a tar seed") { () throws(CheckpointError) in
                let writer = TarWriter(sink: sink)
                try writer.writeMember(name: ContainerStack.nativeMember, size: native.count, mtime: 0) { (member) throws(CheckpointError) in
                    try member.write(native)
                }
                // A name too long and not ASCII for ustar: a pax header.
                let name = "run/" + String(repeating: "é", count: 60) + "/checkpoint.safetensors"
                try writer.writeMember(name: name, size: 3, mtime: 0) { (member) throws(CheckpointError) in try member.write([1, 2, 3]) }
                try writer.finish()
            }
            return [("native.tar", sink.bytes)]
        },
        run: { bytes in
            let whole = read { (reader) throws(CheckpointError) in try reader.write(bytes) }
            if case .accepted(let members) = whole {
                // A member is sliced out of the mapping by these numbers: they must lie inside it.
                for member in members where member.kind == .file {
                    FuzzCheck.expect(
                        member.dataOffset >= 0 && member.size >= 0 && member.dataOffset <= bytes.count - member.size,
                        "member \"\(member.name)\" (\(member.size) bytes at \(member.dataOffset)) lies inside the \(bytes.count)-byte archive")
                    FuzzCheck.expect(
                        !member.name.hasPrefix("/") && !member.name.split(separator: "/").contains(".."),
                        "member \"\(member.name)\" has neither an absolute path nor a \"..\" component")
                }
                let listed = FuzzCheck.succeeds("listing an archive the reader accepted") { () throws(CheckpointError) in
                    try TarReader.members(of: bytes)
                }
                FuzzCheck.expect(listed == members.map(\.member), "TarReader.members(of:) lists what the reader found")
            }
            let pieces = read { (reader) throws(CheckpointError) in try feedInPieces(bytes, reader.write) }
            FuzzCheck.expect(pieces == whole, "the archive in pieces gives \(pieces), whole \(whole)")
        }
    )

    /// A member and the digest of its bytes.
    struct Read: Equatable {
        var member: TarMember
        var digest: UInt64?
        var kind: TarMember.Kind { member.kind }
        var name: String { member.name }
        var size: Int { member.size }
        var dataOffset: Int { member.dataOffset }
    }

    enum Result: Equatable, CustomStringConvertible {
        case accepted([Read])
        case refused(CheckpointError.Code)

        var description: String {
            switch self {
            case .accepted(let members): "\(members.count) members"
            case .refused(let code): "refused (\(code))"
            }
        }
    }

    /// Runs a reader that routes every file's bytes to a digest, fed by `feed`.
    private static func read(_ feed: (TarReader) throws(CheckpointError) -> Void) -> Result {
        var sinks: [DigestSink] = []
        let reader = TarReader { (_) throws(CheckpointError) in
            let sink = DigestSink()
            sinks.append(sink)
            return sink
        }
        do {
            try feed(reader)
            try reader.finish()
        } catch {
            return .refused(error.code)
        }
        var files = sinks.makeIterator()
        return .accepted(reader.members.map { member in
            Read(member: member, digest: member.kind == .file ? files.next()?.digest : nil)
        })
    }
}
