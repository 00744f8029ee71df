/// A layer around a checkpoint's format: a compressed stream or a tar archive.
public enum ContainerLayer: Sendable, Equatable, CustomStringConvertible {
    /// A compressed stream of the inner bytes.
    case compressed(CompressionCodec)
    /// A tar archive; the checkpoint is the named member.
    case tar(member: String)

    public var description: String {
        switch self {
        case .compressed(let codec): codec.rawValue
        case .tar(let member): "tar (\(member))"
        }
    }

    /// The kind of file this layer is.
    var fileKind: FileKind {
        switch self {
        case .compressed(let codec): codec.fileKind
        case .tar: .tar
        }
    }
}

/// Opening the layers around a checkpoint, each recognised by its magic number, never its
/// name: a compressed stream is decompressed into an anonymous temporary file and
/// mapped; a tar member is a slice of its archive's mapping. Composer's `.tar.lzma` (which
/// holds xz) and any other stack (a `.tar.gz` of a `.pt.zst`, ...) open the same way.
enum ContainerStack {
    /// Layers deeper than this are refused: a real checkpoint has at most two (tar, then
    /// compression), and a self-reproducing stream ("a gzip quine") must not loop forever.
    static let maximumDepth = 4

    /// The member a Composer tar holds (the torch format).
    static let torchMember = "composer_states.pt"
    /// The member a native tar holds.
    static let nativeMember = "checkpoint.safetensors"

    /// The innermost file under `file`'s layers, and the layers, outermost first.
    static func unwrap(
        _ file: MappedFile, path: String, limits: ReadingLimits
    ) throws(CheckpointError) -> (file: MappedFile, layers: [ContainerLayer]) {
        var current = file
        var layers: [ContainerLayer] = []
        while true {
            let prefix = UnsafeRawBufferPointer(rebasing: current.bytes.prefix(512))
            guard let kind = FileKind.sniff(prefix, fileSize: current.bytes.count) else { return (current, layers) }
            let codec = CompressionCodec(kind: kind)
            if kind != .tar && codec == nil { return (current, layers) }
            guard layers.count < maximumDepth else {
                throw CheckpointError(
                    .limitExceeded,
                    "is nested more than \(maximumDepth) containers deep (\(layers.map(\.description).joined(separator: " in "))); a checkpoint has at most a tar and a compression",
                    path: path)
            }
            if codec == .floatSplit {
                // Indexed: only the chunks a load needs are decoded, when it needs them.
                current = try FloatSplitArchive.open(current, limits: limits, path: path)
                layers.append(.compressed(.floatSplit))
            } else if let codec {
                current.adviseSequentialRead()
                current = try Decompression.decompress(current.bytes, codec: codec, limits: limits, path: path)
                layers.append(.compressed(codec))
            } else {
                let member = try checkpointMember(of: current, path: path)
                current = MappedFile(
                    slice: member.dataOffset..<(member.dataOffset + member.size), of: current,
                    path: "\(path) (member \(member.name))")
                layers.append(.tar(member: member.name))
            }
        }
    }

    /// The member of a tar archive that holds the checkpoint: `composer_states.pt` or
    /// `checkpoint.safetensors`, else the archive's only file.
    static func checkpointMember(of archive: MappedFile, path: String) throws(CheckpointError) -> TarMember {
        let members: [TarMember]
        do {
            members = try TarReader.members(of: archive.bytes)
        } catch {
            throw error.at(path: path)
        }
        let files = members.filter { $0.kind == .file }
        let known = files.filter { $0.name == torchMember || $0.name == nativeMember }
        let candidates = known.isEmpty ? files : known
        guard let chosen = candidates.first else {
            throw CheckpointError(.malformed, "is a tar archive that holds no file", path: path)
        }
        guard candidates.count == 1 else {
            let names = candidates.prefix(10).map { "\"\($0.name)\"" }.joined(separator: ", ")
            let what = known.isEmpty ? "several files and none is named \(torchMember) or \(nativeMember)" : "more than one checkpoint member"
            throw CheckpointError(
                .malformed, "is a tar archive with \(what) (\(names)\(candidates.count > 10 ? ", ..." : "")); which one to load is ambiguous",
                path: path)
        }
        return chosen
    }
}

extension SaveTarget.Format {
    /// The member a tar of this format holds.
    var tarMemberName: String {
        switch self {
        case .native: ContainerStack.nativeMember
        case .torch: ContainerStack.torchMember
        }
    }
}
