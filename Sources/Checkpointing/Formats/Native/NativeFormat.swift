import Foundation

/// The native format: a valid safetensors file whose `__metadata__` also holds the
/// rest of the tree and an XXH3-64 checksum per tensor.
///
/// Any safetensors reader loads its tensors, named by their flattened paths; this library
/// also restores the tree around them and checks every tensor against its checksum.
enum NativeFormat: CheckpointFormat {
    /// `__metadata__` keys.
    enum MetadataKey {
        /// `"pt"`, as the `safetensors` package writes it, so tools that check it accept the file.
        static let framework = "format"
        static let format = "checkpoint_format"
        static let version = "checkpoint_format_version"
        static let checksumAlgorithm = "checksum_algorithm"
        static let checksums = "checksums"
        static let tree = "tree"
        /// The XXH3-64 of the tree's JSON: a damaged header cannot pass for another state.
        static let treeChecksum = "tree_checksum"
    }

    static let formatName = "swift-checkpointing"
    static let version = "1"

    /// A tree laid out for writing: tensor order and offsets, and the header's exact length.
    struct Layout {
        var tensors: [(path: String, tensor: Tensor, begin: Int)]
        /// The tree's JSON; `nil` for a plain safetensors file of named tensors (a Hugging Face
        /// shard), whose metadata then holds only the framework and the checksums.
        var tree: String?
        /// The header's length including padding, the same before and after checksumming.
        var headerLength: Int
        var dataLength: Int
    }

    static func size(of layout: Layout) -> Int { 8 + layout.headerLength + layout.dataLength }

    /// Lays `tree` out: collects its tensors, orders them so that each is aligned to its
    /// element size (largest elements first, then by name), and sizes the header.
    static func layout(_ tree: StateValue) throws(CheckpointError) -> Layout {
        var tensors: [(path: String, tensor: Tensor)] = []
        var seen = Set<String>()
        let node = try TreeCoding.encode(tree) { (path, tensor) throws(CheckpointError) in
            guard path != "__metadata__" else {
                throw CheckpointError(.invalidArgument, "a tensor cannot be named \"__metadata__\": safetensors reserves it")
            }
            guard seen.insert(path).inserted else {
                throw CheckpointError(
                    .invalidArgument,
                    "two tensors have the flattened path \"\(path)\" (an integer key and a string key with the same digits?); rename one")
            }
            tensors.append((path, tensor))
        }
        let encoder = JSONEncoder()
        // Sorted keys: the same tree gives the same bytes in every process.
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        let treeJSON: String
        do {
            treeJSON = String(decoding: try encoder.encode(node), as: UTF8.self)
        } catch {
            // The error's description holds the whole tree: too long to be of use.
            throw CheckpointError(.invalidArgument, "the tree cannot be described as JSON")
        }
        return layout(tensors, tree: treeJSON)
    }

    /// Lays out a plain safetensors file of `tensors` under their names (unique, none
    /// `__metadata__`), with a checksum for each in its metadata but no tree.
    static func layout(plain tensors: [(name: String, tensor: Tensor)]) -> Layout {
        layout(tensors.map { ($0.name, $0.tensor) }, tree: nil)
    }

    /// Orders tensors so that each is aligned to its element size (largest elements first, then
    /// by name), places them, and sizes the header.
    private static func layout(_ tensors: [(path: String, tensor: Tensor)], tree: String?) -> Layout {
        var tensors = tensors
        tensors.sort { a, b in
            a.tensor.dtype.byteSize != b.tensor.dtype.byteSize
                ? a.tensor.dtype.byteSize > b.tensor.dtype.byteSize : a.path < b.path
        }
        var offset = 0
        var placed: [(path: String, tensor: Tensor, begin: Int)] = []
        placed.reserveCapacity(tensors.count)
        for (path, tensor) in tensors {
            placed.append((path, tensor, offset))
            offset += tensor.byteCount
        }
        var layout = Layout(tensors: placed, tree: tree, headerLength: 0, dataLength: offset)
        layout.headerLength = header(layout, checksums: nil).count
        return layout
    }

    /// The header bytes, padded with spaces to a multiple of 8. Without checksums every
    /// checksum is zeros: the same length, so the header can be written first and filled in last.
    static func header(_ layout: Layout, checksums: [UInt64]?) -> [UInt8] {
        var sums = "{"
        for (index, entry) in layout.tensors.enumerated() {
            if index > 0 { sums += "," }
            sums += JSONText.quoted(entry.path) + ":\"" + TensorChecksum.hex(checksums?[index] ?? 0) + "\""
        }
        sums += "}"
        var text = "{\"__metadata__\":{"
        text += JSONText.quoted(MetadataKey.framework) + ":\"pt\","
        if layout.tree != nil {
            text += JSONText.quoted(MetadataKey.format) + ":" + JSONText.quoted(formatName) + ","
            text += JSONText.quoted(MetadataKey.version) + ":" + JSONText.quoted(version) + ","
        }
        text += JSONText.quoted(MetadataKey.checksumAlgorithm) + ":" + JSONText.quoted(TensorChecksum.algorithm) + ","
        text += JSONText.quoted(MetadataKey.checksums) + ":" + JSONText.quoted(sums)
        if let tree = layout.tree {
            text += "," + JSONText.quoted(MetadataKey.treeChecksum) + ":\"" + TensorChecksum.hex(of: tree) + "\","
            text += JSONText.quoted(MetadataKey.tree) + ":" + JSONText.quoted(tree)
        }
        text += "}"
        for entry in layout.tensors {
            text += "," + JSONText.quoted(entry.path) + ":{\"dtype\":\"" + entry.tensor.dtype.safetensorsName
            text += "\",\"shape\":[" + entry.tensor.shape.map(String.init).joined(separator: ",")
            text += "],\"data_offsets\":[\(entry.begin),\(entry.begin + entry.tensor.byteCount)]}"
        }
        text += "}"
        var bytes = Array(text.utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - (8 + bytes.count) % 8) % 8))
        return bytes
    }

    /// Writes a laid-out tree to `sink`.
    ///
    /// On a seekable sink each tensor is hashed chunk by chunk right before the chunk is
    /// written (one pass over memory), and the header is filled in at the end; on a plain
    /// stream the checksums are computed first.
    @discardableResult
    static func write(_ layout: Layout, to sink: any ByteSink) throws(CheckpointError) -> UInt64 {
        let start = sink.position
        let length = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(layout.headerLength) >> ($0 * 8)) }
        func writeLength() throws(CheckpointError) { try sink.write(length) }
        if let seekable = sink as? any SeekableByteSink {
            try writeLength()
            try sink.write(header(layout, checksums: nil))
            var checksums: [UInt64] = []
            checksums.reserveCapacity(layout.tensors.count)
            let hasher = StreamingChecksum()
            for entry in layout.tensors {
                hasher.reset()
                try entry.tensor.withUnsafeBytes { (bytes) throws(CheckpointError) in
                    try bytes.forEachChunk(ofAtMost: chunkSize) { (chunk) throws(CheckpointError) in
                        hasher.update(chunk)
                        try sink.write(chunk)
                    }
                }
                checksums.append(hasher.value)
            }
            let final = header(layout, checksums: checksums)
            precondition(final.count == layout.headerLength, "a checksum changed the header's length")
            try rethrowingCheckpointError { try final.withUnsafeBytes { try seekable.write($0, at: start + 8) } }
            return (length + final).withUnsafeBytes(TensorChecksum.of)
        } else {
            let checksums = layout.tensors.map { entry in entry.tensor.withUnsafeBytes(TensorChecksum.of) }
            let header = header(layout, checksums: checksums)
            try writeLength()
            try sink.write(header)
            for entry in layout.tensors {
                try entry.tensor.withUnsafeBytes { (bytes) throws(CheckpointError) in try sink.write(bytes) }
            }
            return (length + header).withUnsafeBytes(TensorChecksum.of)
        }
    }

    /// XXH3-64 of the length prefix and the header: the file's ``FormatContents/integrityDigest``.
    private static func indexDigest(_ file: MappedFile, _ header: SafetensorsHeader) -> UInt64 {
        TensorChecksum.of(UnsafeRawBufferPointer(rebasing: file.bytes[0..<header.dataStart]))
    }

    /// Hash-then-write granularity: small enough that a chunk is still in cache when written,
    /// large enough that the system-call count stays negligible.
    static let chunkSize = 4 << 20

    /// Reads a safetensors file: the tree and checksums of a native file, or a tree whose root
    /// holds a plain file's tensors under their names, in file order, with the checksums a plain
    /// file records when it records them as this library does (a Hugging Face shard it wrote).
    /// Tensor bytes stay mapped.
    static func read(_ file: MappedFile) throws(CheckpointError) -> FormatContents {
        try read(file, limits: ReadingLimits())
    }

    /// Reads a safetensors file as ``read(_:)`` does, its header within `limits`.
    static func read(_ file: MappedFile, limits: ReadingLimits) throws(CheckpointError) -> FormatContents {
        do throws(CheckpointError) {
            let header = try SafetensorsHeader(parsing: file.bytes, maximumLength: limits.maximumHeaderBytes)
            var tensors: [String: Tensor] = [:]
            for entry in header.entries {
                let bytes = UnsafeRawBufferPointer(
                    rebasing: file.bytes[(header.dataStart + entry.begin)..<(header.dataStart + entry.end)])
                tensors[entry.name] = Tensor(
                    dtype: entry.dtype, shape: entry.shape, buffer: TensorBuffer(mapped: bytes, mapping: file))
            }
            guard header.metadata[MetadataKey.format] == formatName else {
                let root = StateDict(header.entries.map { (StateKey.string($0.name), StateValue.tensor(tensors[$0.name]!)) })
                let recordsChecksums =
                    header.metadata[MetadataKey.checksumAlgorithm] == TensorChecksum.algorithm
                    && header.metadata[MetadataKey.checksums] != nil
                var checksums: [String: UInt64] = [:]
                if recordsChecksums {
                    // Recorded by name; kept, as everywhere, by flattened path (a name's `/` escaped).
                    for (name, checksum) in try decodeChecksums(header.metadata[MetadataKey.checksums], tensorNames: Set(tensors.keys)) {
                        checksums[StatePath.escape(name)] = checksum
                    }
                }
                return FormatContents(
                    tree: .dict(root), checksums: checksums, metadata: header.metadata, isNative: false,
                    integrityDigest: indexDigest(file, header))
            }
            guard header.metadata[MetadataKey.version] == version else {
                throw CheckpointError(
                    .unsupportedFormat,
                    "the file is \(formatName) format version \(header.metadata[MetadataKey.version] ?? "?"); this library reads version \(version): upgrade swift-checkpointing")
            }
            guard header.metadata[MetadataKey.checksumAlgorithm] == TensorChecksum.algorithm else {
                throw CheckpointError(
                    .unsupportedFormat,
                    "the file's checksums use \(header.metadata[MetadataKey.checksumAlgorithm] ?? "no algorithm"), expected \(TensorChecksum.algorithm)")
            }
            let checksums = try decodeChecksums(header.metadata[MetadataKey.checksums], tensorNames: Set(tensors.keys))
            let treeJSON = header.metadata[MetadataKey.tree] ?? ""
            guard header.metadata[MetadataKey.treeChecksum] == TensorChecksum.hex(of: treeJSON) else {
                throw CheckpointError(
                    .checksumMismatch,
                    "the tree in the header does not match its checksum: the header is damaged; restore the file from another copy or resume from an earlier checkpoint")
            }
            let node: TreeNode
            do {
                node = try JSONDecoder().decode(TreeNode.self, from: Data(treeJSON.utf8))
            } catch {
                throw CheckpointError(.malformed, "the tree in the header's metadata is not valid: \(error)")
            }
            var referenced = Set<String>()
            let tree = try TreeCoding.decode(node, limit: limits.maximumDepth) { (reference) throws(CheckpointError) in
                guard let tensor = tensors[reference] else {
                    throw CheckpointError(.malformed, "the tree refers to a tensor \"\(reference)\" that the file does not hold")
                }
                guard referenced.insert(reference).inserted else {
                    throw CheckpointError(.malformed, "the tree refers to tensor \"\(reference)\" twice")
                }
                return tensor
            }
            if let orphan = tensors.keys.first(where: { !referenced.contains($0) }) {
                throw CheckpointError(.malformed, "tensor \"\(orphan)\" is in the file but not in its tree")
            }
            return FormatContents(
                tree: tree, checksums: checksums, metadata: header.metadata, isNative: true, integrityDigest: indexDigest(file, header))
        } catch {
            throw error.at(path: file.path)
        }
    }

    private static func decodeChecksums(
        _ text: String?, tensorNames: Set<String>
    ) throws(CheckpointError) -> [String: UInt64] {
        guard let text, let data = text.data(using: .utf8),
            let recorded = try? JSONDecoder().decode([String: String].self, from: data)
        else {
            throw CheckpointError(.malformed, "the header's checksum table is missing or not valid JSON")
        }
        var checksums: [String: UInt64] = [:]
        for (name, hex) in recorded {
            guard hex.utf8.count == TensorChecksum.width, let value = UInt64(hex, radix: 16) else {
                throw CheckpointError(.malformed, "the checksum of tensor \"\(name)\" is not \(TensorChecksum.width) hex digits")
            }
            checksums[name] = value
        }
        guard Set(checksums.keys) == tensorNames else {
            let missing = tensorNames.subtracting(checksums.keys).sorted().prefix(5)
            throw CheckpointError(
                .malformed, "the checksum table does not match the tensors (no checksum for: \(missing.joined(separator: ", ")))")
        }
        return checksums
    }
}

/// JSON text for the parts of the header written by hand (so its length is known exactly).
enum JSONText {
    /// `string` as a JSON string literal, with quotes.
    static func quoted(_ string: String) -> String {
        var result = "\""
        result.reserveCapacity(string.utf8.count + 2)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
