#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a tar archive (POSIX ustar; a pax header for a name over 100 bytes or not ASCII, or a
/// size over 8 GiB) to a sink as it goes: each member's header, then its bytes as its writer
/// produces them, then padding. Nothing is buffered, so a member of any size streams straight
/// into a file or a compressor.
final class TarWriter {
    private let sink: any ByteSink

    /// Two zero blocks end an archive.
    static let endSize = 2 * TarHeader.blockSize

    init(sink: any ByteSink) {
        self.sink = sink
    }

    /// Writes a member of exactly `size` bytes, which `body` writes to the sink it is given.
    ///
    /// The sink given to `body` is seekable when the archive's sink is, so a format that fills
    /// in its header last (the native one) still writes in one pass.
    func writeMember(
        name: String, size: Int, mtime: Int = Int(time(nil)),
        body: (any ByteSink) throws(CheckpointError) -> Void
    ) throws(CheckpointError) {
        for block in Self.headers(name: name, size: size, mtime: mtime) { try sink.write(block) }
        let member: TarMemberSink
        if let seekable = sink as? any SeekableByteSink {
            member = SeekableTarMemberSink(archive: seekable, name: name, size: size)
        } else {
            member = TarMemberSink(archive: sink, name: name, size: size)
        }
        try body(member)
        guard member.position == size else {
            throw CheckpointError(
                .invalidArgument, "tar member \"\(name)\" was declared as \(size) bytes but \(member.position) were written")
        }
        try sink.write([UInt8](repeating: 0, count: TarHeader.padding(after: size)))
    }

    /// Ends the archive.
    func finish() throws(CheckpointError) {
        try sink.write([UInt8](repeating: 0, count: Self.endSize))
    }

    /// The bytes a member takes in the archive: its header blocks, data and padding.
    static func archivedSize(name: String, size: Int) -> Int {
        headers(name: name, size: size, mtime: 0).reduce(0) { $0 + $1.count } + size + TarHeader.padding(after: size)
    }

    /// The header blocks of a member: a pax header first when ustar cannot hold its name or size.
    static func headers(name: String, size: Int, mtime: Int) -> [[UInt8]] {
        let nameBytes = Array(name.utf8)
        var records: [(String, String)] = []
        if nameBytes.count > TarHeader.nameLength || nameBytes.contains(where: { $0 >= 0x80 }) { records.append(("path", name)) }
        if size > TarHeader.maximumOctalSize { records.append(("size", String(size))) }
        var blocks: [[UInt8]] = []
        if !records.isEmpty {
            let data = TarHeader.paxRecords(records)
            blocks.append(TarHeader.make(name: "././@PaxHeader", size: data.count, kind: .pax, mtime: mtime))
            blocks.append(data + [UInt8](repeating: 0, count: TarHeader.padding(after: data.count)))
        }
        // The ustar name keeps what fits (whole UTF-8 characters), for readers without pax.
        var shortName = ""
        for character in name where shortName.utf8.count + String(character).utf8.count <= TarHeader.nameLength {
            shortName.append(character)
        }
        blocks.append(TarHeader.make(name: shortName, size: size, kind: .file, mtime: mtime))
        return blocks
    }
}

/// The sink a member's bytes go through: it passes them to the archive and refuses more than
/// the size declared in the header.
class TarMemberSink: ByteSink {
    let archive: any ByteSink
    let name: String
    let size: Int
    /// The archive's position where the member's data starts.
    let start: Int
    private(set) var position = 0

    init(archive: any ByteSink, name: String, size: Int) {
        self.archive = archive
        self.name = name
        self.size = size
        start = archive.position
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        guard position + bytes.count <= size else { throw overflow() }
        try archive.write(bytes)
        position += bytes.count
    }

    func overflow() -> CheckpointError {
        CheckpointError(.invalidArgument, "more bytes were written to tar member \"\(name)\" than the \(size) declared")
    }
}

/// A member sink over a seekable archive: writes at an offset land inside the member.
final class SeekableTarMemberSink: TarMemberSink, SeekableByteSink {
    private let seekable: any SeekableByteSink

    init(archive: any SeekableByteSink, name: String, size: Int) {
        seekable = archive
        super.init(archive: archive, name: name, size: size)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        guard offset >= 0, offset + bytes.count <= position else { throw overflow() }
        try seekable.write(bytes, at: start + offset)
    }
}
