/// A member of a tar archive, as the reader found it.
struct TarMember: Equatable {
    enum Kind { case file, directory }

    /// The member's path inside the archive, without a leading `./`.
    var name: String
    var kind: Kind
    var size: Int
    /// Where the member's data starts in the archive.
    var dataOffset: Int
}

/// Reads a tar archive as it arrives (a sink: give it the archive's bytes in pieces of any size),
/// treating it as hostile.
///
/// Reads POSIX ustar, pax extended headers (`path`, `size`) and GNU long names and base-256
/// sizes. Refuses, naming the member: an absolute path (except the root folder entry `/` or
/// `./` that Python's tarfile writes for Composer), a `..` component, hard and symbolic links,
/// devices and FIFOs, unknown member types, a damaged header (its checksum), and a member whose
/// size runs past the end of the archive. Nothing is ever extracted to disk: a member's bytes
/// go to the sink `route` returns for it, or are skipped without being read (so a member of a
/// mapped archive is only located, then sliced).
final class TarReader: ByteSink {
    /// The most a pax header or GNU long name may hold: far more than any path needs.
    static let maximumExtendedHeader = 1 << 20

    private enum Step {
        case header
        case extended(kind: TarHeader.Kind, size: Int)
        case data(member: TarMember, remaining: Int, sink: (any ByteSink)?)
        case padding(remaining: Int)
        /// After the end-of-archive zero block: the rest is ignored, as tar does.
        case end

        /// The bytes a header step parses in one piece.
        var need: Int {
            switch self {
            case .header: TarHeader.blockSize
            // Extended data is read whole, with its padding.
            case .extended(_, let size): size + TarHeader.padding(after: size)
            default: 0
            }
        }
    }

    /// What the archive holds: files and folders, in order.
    private(set) var members: [TarMember] = []
    private(set) var position = 0
    private let route: (TarMember) throws(CheckpointError) -> (any ByteSink)?
    private var step = Step.header
    private var pending: [UInt8] = []
    /// Overrides from a pax header or GNU long name, for the next member.
    private var nextPath: String?
    private var nextSize: Int?
    /// Where the header being parsed started.
    private var headerOffset = 0

    /// `route` says where each file's bytes go: `nil` skips them.
    init(route: @escaping (TarMember) throws(CheckpointError) -> (any ByteSink)? = { _ in nil }) {
        self.route = route
    }

    /// Every member of a whole archive held in memory or mapped; the data is not read.
    static func members(of archive: UnsafeRawBufferPointer) throws(CheckpointError) -> [TarMember] {
        let reader = TarReader()
        try reader.write(archive)
        try reader.finish()
        return reader.members
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        var offset = 0
        while offset < bytes.count {
            switch step {
            case .end:
                offset = bytes.count
            case .data(let member, let remaining, let sink):
                let count = min(remaining, bytes.count - offset)
                try sink?.write(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
                offset += count
                step = remaining == count ? .padding(remaining: TarHeader.padding(after: member.size)) : .data(member: member, remaining: remaining - count, sink: sink)
            case .padding(let remaining):
                let count = min(remaining, bytes.count - offset)
                offset += count
                step = remaining == count ? .header : .padding(remaining: remaining - count)
            case .header, .extended:
                let need = step.need
                let start = position + offset
                if pending.isEmpty && bytes.count - offset >= need {
                    offset += need
                    try parse(UnsafeRawBufferPointer(rebasing: bytes[(offset - need)..<offset]), at: start)
                } else {
                    let count = min(need - pending.count, bytes.count - offset)
                    if pending.isEmpty { headerOffset = start }
                    pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
                    offset += count
                    if pending.count == need {
                        let gathered = pending
                        pending.removeAll()
                        let at = headerOffset
                        try rethrowingCheckpointError { try gathered.withUnsafeBytes { try parse($0, at: at) } }
                    }
                }
            }
        }
        position += bytes.count
    }

    /// Checks that the archive ended where it may: between members.
    func finish() throws(CheckpointError) {
        switch step {
        case .end:
            return
        case .header where pending.isEmpty:
            guard !members.isEmpty else {
                throw CheckpointError(.malformed, "the tar archive holds no member", offset: position)
            }
        case .data(let member, let remaining, _):
            throw CheckpointError(
                .malformed,
                "tar member \"\(member.name)\" claims \(member.size) bytes but the archive ends \(remaining) bytes short of that: the archive is truncated or the member's size is false",
                offset: position)
        case .padding:
            return
        default:
            throw CheckpointError(.malformed, "the tar archive is truncated inside a header", offset: position)
        }
    }

    private func malformed(_ detail: String, at offset: Int) -> CheckpointError {
        CheckpointError(.malformed, "the tar archive is damaged: \(detail)", offset: offset)
    }

    private func parse(_ block: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        if case .extended(let kind, let size) = step {
            try parseExtended(UnsafeRawBufferPointer(rebasing: block[..<size]), kind: kind, at: offset)
            step = .header
            return
        }
        if block.allSatisfy({ $0 == 0 }) {
            step = .end
            return
        }
        guard TarHeader.checksumMatches(block) else {
            throw malformed("a header's checksum does not match (not a tar archive, or a damaged one)", at: offset)
        }
        let rawKind = block[156]
        guard let kind = TarHeader.Kind(rawValue: rawKind) else {
            throw CheckpointError(
                .unsupportedFormat,
                "the tar archive holds a member of type '\(Character(Unicode.Scalar(rawKind)))', which this library does not read (only files and folders)",
                offset: offset)
        }
        guard var size = TarHeader.number(UnsafeRawBufferPointer(rebasing: block[124..<136])) else {
            throw malformed("a header's size field is not a number", at: offset)
        }
        if let nextSize, kind != .pax, kind != .gnuLongName, kind != .gnuLongLink, kind != .paxGlobal { size = nextSize }

        switch kind {
        case .pax, .paxGlobal, .gnuLongName, .gnuLongLink:
            guard size <= Self.maximumExtendedHeader else {
                throw CheckpointError(
                    .limitExceeded,
                    "the tar archive has an extended header of \(size) bytes, more than the \(Self.maximumExtendedHeader) allowed",
                    offset: offset)
            }
            step = .extended(kind: kind, size: size)
            if size == 0 {
                step = .header
            }
            return
        default:
            break
        }

        let name = try memberName(block, at: offset)
        nextPath = nil
        nextSize = nil
        switch kind {
        case .hardLink, .symbolicLink:
            throw CheckpointError(
                .malformed,
                "tar member \"\(name)\" is a \(kind == .hardLink ? "hard" : "symbolic") link; links are refused (they can point outside the archive)",
                offset: offset)
        case .characterDevice, .blockDevice, .fifo:
            throw CheckpointError(
                .malformed, "tar member \"\(name)\" is a device or FIFO, which a checkpoint never holds; refused", offset: offset)
        case .directory:
            let normalized = try checkedPath(name, isDirectory: true, at: offset)
            members.append(TarMember(name: normalized, kind: .directory, size: 0, dataOffset: offset + TarHeader.blockSize))
            // A folder's size is meaningless; its data, if any, is skipped.
            step = size > 0 ? .data(member: TarMember(name: normalized, kind: .directory, size: size, dataOffset: 0), remaining: size, sink: nil) : .header
        default:
            let normalized = try checkedPath(name, isDirectory: false, at: offset)
            let member = TarMember(name: normalized, kind: .file, size: size, dataOffset: position(after: offset))
            members.append(member)
            let sink = try route(member)
            step = size > 0 ? .data(member: member, remaining: size, sink: sink) : .header
        }
    }

    /// The archive offset right after the header block at `offset`.
    private func position(after offset: Int) -> Int { offset + TarHeader.blockSize }

    /// The member's full name: a pax or GNU long name, else ustar's prefix and name.
    private func memberName(_ block: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) -> String {
        if let nextPath { return nextPath }
        let name = TarHeader.text(UnsafeRawBufferPointer(rebasing: block[0..<100]))
        // POSIX ustar ("ustar\0" "00") splits long names into a prefix; GNU's "ustar  " does not.
        let magic = Array(block[257..<265])
        var full = name
        if magic == Array("ustar".utf8) + [0] + Array("00".utf8) {
            let prefix = TarHeader.text(UnsafeRawBufferPointer(rebasing: block[345..<500]))
            if !prefix.isEmpty { full = prefix + [UInt8(ascii: "/")] + name }
        }
        guard let text = String(validating: full, as: UTF8.self) else {
            throw malformed("a member's name is not valid UTF-8", at: offset)
        }
        return text
    }

    /// Refuses paths that could escape a folder; returns the path without leading `./`.
    private func checkedPath(_ name: String, isDirectory: Bool, at offset: Int) throws(CheckpointError) -> String {
        let components = name.split(separator: "/", omittingEmptySubsequences: true)
        let meaningful = components.filter { $0 != "." }
        if name.hasPrefix("/") {
            // Python's tarfile (Composer) writes the archive's root folder as "/": harmless.
            guard isDirectory, meaningful.isEmpty else {
                throw CheckpointError(
                    .malformed, "tar member \"\(name)\" has an absolute path; refused (it could overwrite any file)",
                    offset: offset)
            }
        }
        guard !meaningful.contains("..") else {
            throw CheckpointError(
                .malformed, "tar member \"\(name)\" has a \"..\" component; refused (it could escape the folder)", offset: offset)
        }
        guard !name.utf8.contains(0) else {
            throw malformed("a member's name holds a NUL byte", at: offset)
        }
        guard isDirectory || !meaningful.isEmpty else {
            throw malformed("a file member has an empty name", at: offset)
        }
        return meaningful.joined(separator: "/")
    }

    /// Applies a pax header's `path` and `size`, or a GNU long name.
    private func parseExtended(_ data: UnsafeRawBufferPointer, kind: TarHeader.Kind, at offset: Int) throws(CheckpointError) {
        switch kind {
        case .gnuLongName:
            guard let name = String(validating: TarHeader.text(data), as: UTF8.self) else {
                throw malformed("a GNU long name is not valid UTF-8", at: offset)
            }
            nextPath = name
        case .gnuLongLink:
            // The link target of the link entry that follows, which is refused there.
            break
        default:
            var rest = data[...]
            while !rest.isEmpty {
                // "<length> <key>=<value>\n", the length counting the whole record.
                guard let space = rest.firstIndex(of: UInt8(ascii: " ")),
                    let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)),
                    length > space - rest.startIndex + 1, length <= rest.count,
                    rest[rest.startIndex + length - 1] == UInt8(ascii: "\n")
                else {
                    throw malformed("a pax header record is malformed", at: offset)
                }
                let record = rest[(space + 1)..<(rest.startIndex + length - 1)]
                rest = rest[(rest.startIndex + length)...]
                guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else {
                    throw malformed("a pax header record has no '='", at: offset)
                }
                let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
                let value = record[(equals + 1)...]
                // A global header's values would apply to every later member; this reader
                // takes names and sizes only from each member's own header.
                guard kind == .pax else { continue }
                switch key {
                case "path":
                    guard let path = String(validating: value, as: UTF8.self) else {
                        throw malformed("a pax path is not valid UTF-8", at: offset)
                    }
                    nextPath = path
                case "size":
                    guard let size = Int(String(decoding: value, as: UTF8.self)), size >= 0 else {
                        throw malformed("a pax size is not a number", at: offset)
                    }
                    nextSize = size
                default:
                    break
                }
            }
        }
    }
}
