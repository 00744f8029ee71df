/// A Hugging Face index (`model.safetensors.index.json`), as read from disk or about to be
/// written:
///
/// ```json
/// {"metadata": {"total_size": 246144},
///  "weight_map": {"layers.0.q_proj.weight": "model-00001-of-00008.safetensors", ...}}
/// ```
///
/// Reading refuses what Hugging Face's own loaders would misread: a tensor listed twice, and
/// shard names that leave the index's folder (absolute paths, `..`), which a crafted index
/// could use to read other files.
struct HuggingFaceIndex {
    /// Every tensor and the shard that holds it (a path relative to the index's folder), in
    /// the index's order.
    var weightMap: [(tensor: String, shard: String)]
    /// `metadata.total_size`, when it is a whole number of bytes.
    var totalSize: Int?
    /// The commit record this library adds to the metadata of the indexes it writes.
    var record: CommitRecord?

    /// What this library records in `metadata.swift_checkpointing`, beside Hugging Face's own
    /// members (readers that do not know it ignore it): each shard's size and the XXH3-64 of
    /// its safetensors header. Each header holds every tensor's checksum, so the digest ties
    /// every byte of the shard to this index: a shard replaced or left over from another save
    /// is found by reading headers only.
    struct CommitRecord {
        static let key = "swift_checkpointing"
        static let version = 1

        struct Shard {
            var name: String
            var byteCount: Int
            /// XXH3-64 of the shard's 8-byte header length and header.
            var headerDigest: UInt64
        }

        /// In file order.
        var shards: [Shard]
    }

    /// The largest index read: a model with a million tensors has an index of about 60 MB.
    static let maximumLength = 256 << 20

    /// The distinct shards, in the order the weight map first names them.
    var shardNames: [String] {
        var seen = Set<String>()
        return weightMap.compactMap { seen.insert($0.shard).inserted ? $0.shard : nil }
    }

    /// Reads an index from its bytes and checks every shard name.
    ///
    /// - Throws: ``CheckpointError`` (`.malformed`, with the byte offset for JSON errors) for an
    ///   index that is not JSON, lacks a `weight_map` of names to shards, lists a tensor twice
    ///   or names a shard outside its folder; `.unsupportedFormat` for a commit record of a
    ///   later version.
    init(parsing bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        func bad(_ message: String) -> CheckpointError { CheckpointError(.malformed, message) }
        guard bytes.count <= Self.maximumLength else {
            throw CheckpointError(
                .limitExceeded, "the index is \(bytes.count) bytes, more than \(Self.maximumLength); it is not a Hugging Face index")
        }
        let root = try OrderedJSON.parse(bytes)
        guard case .object(let members) = root else {
            throw bad("the index is \(root.kindName), not a JSON object with a \"weight_map\"")
        }
        for name in ["weight_map", "metadata"] where members.filter({ $0.name == name }).count > 1 {
            throw bad("the index holds \"\(name)\" twice")
        }
        guard let map = root["weight_map"] else {
            throw bad("the index has no \"weight_map\" (the tensor-to-shard map); it is not a Hugging Face sharded-checkpoint index")
        }
        guard case .object(let entries) = map else { throw bad("the index's \"weight_map\" is \(map.kindName), not an object") }
        guard !entries.isEmpty else { throw bad("the index's \"weight_map\" is empty: the checkpoint holds no tensor") }
        var shardOf: [String: String] = [:]
        weightMap = []
        weightMap.reserveCapacity(entries.count)
        for (tensor, value) in entries.map({ ($0.name, $0.value) }) {
            guard case .string(let shard) = value else {
                throw bad("the weight_map gives tensor \"\(tensor)\" \(value.kindName), not a shard's file name")
            }
            if let earlier = shardOf.updateValue(shard, forKey: tensor) {
                throw bad(
                    "the weight_map lists tensor \"\(tensor)\" twice (in \"\(earlier)\" and in \"\(shard)\"); which shard holds it is ambiguous")
            }
            weightMap.append((tensor, shard))
        }
        for shard in Set(shardOf.values) {
            if let problem = Self.problem(withShardName: shard) {
                let tensor = weightMap.first { $0.shard == shard }?.tensor ?? ""
                throw bad(
                    "the weight_map names \(JSONText.quoted(shard)) as the shard of tensor \"\(tensor)\": \(problem); a shard must be a .safetensors file inside the index's folder, so the index is damaged or was crafted to read other files")
            }
        }
        totalSize = nil
        record = nil
        guard let metadata = root["metadata"] else { return }
        guard case .object = metadata else { throw bad("the index's \"metadata\" is \(metadata.kindName), not an object") }
        if case .number(let text)? = metadata["total_size"] {
            totalSize = Int(text) ?? Double(text).flatMap { $0 >= 0 && $0 < 0x1p62 && $0.rounded() == $0 ? Int($0) : nil }
        }
        if let recorded = metadata[CommitRecord.key] {
            record = try CommitRecord(parsing: recorded)
        }
    }

    init(weightMap: [(tensor: String, shard: String)], totalSize: Int?, record: CommitRecord?) {
        self.weightMap = weightMap
        self.totalSize = totalSize
        self.record = record
    }

    /// What is wrong with a shard name from an index, or `nil` when it names a file inside the
    /// index's folder: a relative path whose components are neither empty, `.` nor `..`, with
    /// `/` as its only separator, ending in `.safetensors`.
    static func problem(withShardName name: String) -> String? {
        if name.isEmpty { return "it is empty" }
        if name.contains("\0") { return "it holds a NUL character" }
        if name.hasPrefix("/") { return "it is an absolute path" }
        if name.contains("\\") { return "it holds a backslash (a Windows path separator)" }
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        if components.first.map({ $0.count >= 2 && $0.dropFirst().first == ":" }) == true {
            return "it starts with a drive letter"
        }
        if components.contains("..") { return "it climbs out of the folder with \"..\"" }
        if components.contains(where: { $0.isEmpty || $0 == "." }) { return "it has an empty or \".\" path component" }
        if !name.hasSuffix(".safetensors") { return "it does not end in .safetensors" }
        return nil
    }

    /// The index as JSON, laid out as `huggingface_hub` writes it (two-space indent, the
    /// weight map in shard order).
    func json() -> String {
        var metadata: [String] = []
        if let totalSize { metadata.append("\"total_size\": \(totalSize)") }
        if let record {
            var shards: [String] = []
            for shard in record.shards {
                shards.append(
                    "        \(JSONText.quoted(shard.name)): {\"bytes\": \(shard.byteCount), \"header_xxh3\": \"\(TensorChecksum.hex(shard.headerDigest))\"}")
            }
            metadata.append(
                """
                \(JSONText.quoted(CommitRecord.key)): {
                      "version": \(CommitRecord.version),
                      "checksum_algorithm": \(JSONText.quoted(TensorChecksum.algorithm)),
                      "shards": {
                \(shards.joined(separator: ",\n"))
                      }
                    }
                """)
        }
        let entries = weightMap.map { "    \(JSONText.quoted($0.tensor)): \(JSONText.quoted($0.shard))" }
        return """
            {
              "metadata": {
                \(metadata.joined(separator: ",\n    "))
              },
              "weight_map": {
            \(entries.joined(separator: ",\n"))
              }
            }

            """
    }
}

extension HuggingFaceIndex.CommitRecord {
    /// Reads the record from the index's metadata.
    init(parsing json: OrderedJSON) throws(CheckpointError) {
        func bad(_ message: String) -> CheckpointError {
            CheckpointError(.malformed, "the index's metadata.\(Self.key) \(message)")
        }
        guard case .number(let version)? = json["version"] else { throw bad("has no version number") }
        guard version == String(Self.version) else {
            throw CheckpointError(
                .unsupportedFormat,
                "the index was written by a later swift-checkpointing (commit record version \(version); this build reads \(Self.version)); upgrade swift-checkpointing")
        }
        guard case .string(let algorithm)? = json["checksum_algorithm"], algorithm == TensorChecksum.algorithm else {
            throw CheckpointError(
                .unsupportedFormat, "the index's shard digests are not \(TensorChecksum.algorithm), the only algorithm this build checks")
        }
        guard case .object(let members)? = json["shards"] else { throw bad("has no \"shards\" object") }
        shards = []
        for (name, value) in members.map({ ($0.name, $0.value) }) {
            guard case .number(let bytesText)? = value["bytes"], let byteCount = Int(bytesText), byteCount >= 0,
                case .string(let digestText)? = value["header_xxh3"], digestText.utf8.count == TensorChecksum.width,
                let digest = UInt64(digestText, radix: 16)
            else {
                throw bad("describes shard \(JSONText.quoted(name)) without a byte count and a 16-hex-digit header digest")
            }
            guard !shards.contains(where: { $0.name == name }) else { throw bad("lists shard \(JSONText.quoted(name)) twice") }
            shards.append(Shard(name: name, byteCount: byteCount, headerDigest: digest))
        }
    }
}
