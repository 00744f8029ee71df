import Foundation

/// The commit record of a sharded checkpoint, written by rank 0 after every rank
/// reported its shard written: the shards (path, size, digest) and, for every tensor, its
/// dtype, global shape and the box each shard holds.
///
/// A sharded checkpoint exists only when its manifest does: shards without one are the
/// leftovers of an unfinished save and are never loaded. The manifest sits beside rank 0's
/// shard, named after it with `.manifest.json` appended (``path(forRankZeroShard:)``), and
/// names the shards relative to its own folder.
public struct ShardManifest: Codable, Sendable, Equatable {
    /// One rank's file.
    public struct Shard: Codable, Sendable, Equatable {
        public var rank: Int
        /// The file's path relative to the manifest's folder.
        public var path: String
        /// The file's size in bytes.
        public var size: Int
        /// 16 hex digits: the XXH3-64 of the shard's index (its safetensors header, which holds
        /// every tensor's checksum and the tree's, or its zip central directory, which holds
        /// every record's CRC-32). Through those checksums it covers every byte of the shard,
        /// and a load checks it by reading the index alone.
        public var digest: String
        /// The object's entity tag when the shard is in an object store (S3's ETag), as the
        /// store reported it after the upload; `nil` for a local file.
        public var etag: String? = nil
    }

    /// One box of a tensor, held by one rank.
    public struct Piece: Codable, Sendable, Equatable {
        public var rank: Int
        public var offset: [Int]
        public var shape: [Int]
    }

    /// A tensor of the checkpoint and where its pieces are.
    public struct TensorEntry: Codable, Sendable, Equatable {
        /// The flattened path.
        public var path: String
        /// The keys from the root, with their types (a dict's integer keys stay integers).
        public var keys: [ManifestKey]
        public var dtype: DType
        /// The global shape.
        public var shape: [Int]
        public var pieces: [Piece]

        /// The box a piece covers.
        func slice(of piece: Piece) -> TensorSlice {
            TensorSlice(globalShape: shape, offset: piece.offset, shape: piece.shape)
        }
    }

    /// The tag in ``format``.
    public static let formatTag = "swift-checkpointing-sharded"

    public var format = ShardManifest.formatTag
    public var version = 1
    /// The number of ranks that saved the checkpoint.
    public var worldSize: Int
    public var runName: String
    public var epoch: Int
    public var batch: Int
    /// Every rank's shard, by rank.
    public var shards: [Shard]
    public var tensors: [TensorEntry]

    enum CodingKeys: String, CodingKey {
        case format, version, worldSize = "world_size", runName = "run_name", epoch, batch, shards, tensors
    }

    /// The suffix of a manifest's name.
    public static let suffix = ".manifest.json"

    /// The manifest of the sharded checkpoint whose rank-0 shard is at `path`.
    public static func path(forRankZeroShard path: String) -> String { path + suffix }

    /// The manifest a path names, or `nil` when it names no sharded checkpoint.
    ///
    /// `path` may be a manifest, or a folder that holds exactly one manifest (the folder of a
    /// sharded checkpoint). A folder with several is ambiguous and an error that lists them;
    /// a folder with none is an error saying the save was never committed, unless it is a
    /// Hugging Face checkpoint's folder (which ``CheckpointFile/open(_:)-7qhys`` opens). In an object
    /// store, a folder is a URL that ends in `/` (`s3://bucket/run/ep3/`), whose objects are listed.
    public static func locate(_ path: String) throws(CheckpointError) -> String? {
        if path.hasSuffix(suffix) { return path }
        let names: [String]
        if case .remote(let location) = StoragePath(path) {
            guard location.key.isEmpty || location.key.hasSuffix("/") else { return nil }
            let listing = try ObjectStores.store(for: location).list(location, delimiter: "/")
            names = listing.objects.map(\.location.name).filter { $0.hasSuffix(suffix) }.sorted()
        } else {
            guard try SystemCalls.isFolder(path) == true else { return nil }
            names = try SystemCalls.folderEntries(path).filter { $0.hasSuffix(suffix) }.sorted()
        }
        switch names.count {
        case 0:
            if try HuggingFaceReader.locateIndex(path) != nil { return nil }
            if try DistributedCheckpoint.locate(path) != nil { return nil }
            throw CheckpointError(
                .notFound,
                "is a folder without a commit manifest (*\(suffix)): it holds no committed sharded checkpoint (an unfinished save leaves shards and no manifest)",
                path: path)
        case 1:
            return StoragePaths.join(path, names[0])
        default:
            throw CheckpointError(
                .invalidArgument,
                "holds \(names.count) sharded checkpoints (\(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", ..." : "")); name the manifest of the one to use",
                path: path)
        }
    }

    /// Reads and checks the manifest at `path`: its tag and version, one shard per rank, and
    /// pieces that tile every tensor exactly.
    public static func read(_ path: String) throws(CheckpointError) -> ShardManifest {
        let data: Data
        if case .remote(let location) = StoragePath(path) {
            do {
                data = Data(try ObjectStores.store(for: location).read(location, range: nil))
            } catch where error.code == .notFound {
                throw CheckpointError(.notFound, "no such sharded-checkpoint manifest", path: path)
            }
        } else {
            do {
                data = Data(try SystemCalls.readFile(path, limit: 256 << 20))
            } catch where error.code == .notFound {
                throw CheckpointError(.notFound, "no such sharded-checkpoint manifest", path: path)
            } catch where error.code == .io {
                throw CheckpointError(.io, "cannot read the manifest: \(error.message)", path: path, underlying: error.underlying)
            }
        }
        let manifest: ShardManifest
        do {
            manifest = try JSONDecoder().decode(ShardManifest.self, from: data)
        } catch {
            throw CheckpointError(.malformed, "is not a valid sharded-checkpoint manifest: \(error)", path: path)
        }
        do {
            try manifest.validate()
        } catch {
            throw error.at(path: path)
        }
        return manifest
    }

    /// Checks that the manifest describes a whole checkpoint; rank 0 runs this before it
    /// commits, and every load runs it again.
    func validate() throws(CheckpointError) {
        func bad(_ message: String) -> CheckpointError { CheckpointError(.malformed, message) }
        guard format == Self.formatTag else { throw bad("the format tag is \"\(format)\", not \"\(Self.formatTag)\"") }
        guard version == 1 else {
            throw CheckpointError(.unsupportedFormat, "is a version \(version) manifest; this build reads version 1; update swift-checkpointing")
        }
        guard worldSize >= 1, shards.count == worldSize, shards.enumerated().allSatisfy({ $0.offset == $0.element.rank }) else {
            throw bad("lists \(shards.count) shards for a world of \(worldSize) ranks; it needs one per rank, in rank order")
        }
        for shard in shards {
            guard !shard.path.isEmpty, !shard.path.hasPrefix("/"), shard.size >= 0, UInt64(shard.digest, radix: 16) != nil else {
                throw bad("rank \(shard.rank)'s shard entry is invalid (path \"\(shard.path)\", size \(shard.size), digest \"\(shard.digest)\")")
            }
        }
        var seen = Set<String>()
        for tensor in tensors {
            guard seen.insert(tensor.path).inserted else { throw bad("lists tensor \"\(tensor.path)\" twice") }
            try tensor.validateTiling(worldSize: worldSize)
        }
    }

    /// The path of `rank`'s shard, for a manifest at `manifestPath` (a local path or an
    /// object-store URL).
    public func shardPath(rank: Int, manifestPath: String) -> String {
        StoragePaths.join(StoragePaths.folder(of: manifestPath), shards[rank].path)
    }

    /// The objects of the shards, for a manifest at `manifest` in an object store.
    package func shardLocations(manifest: ObjectLocation) -> [ObjectLocation] {
        shards.compactMap { ObjectLocation(shardPath(rank: $0.rank, manifestPath: manifest.description)) }
    }

    /// Writes the manifest atomically and durably.
    func write(to path: String) throws(CheckpointError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do { data = try encoder.encode(self) } catch {
            throw CheckpointError(.io, "cannot encode the manifest: \(error)", path: path)
        }
        try writeFileAtomically(Array(data), to: path)
    }
}

extension ShardManifest.TensorEntry {
    /// Every piece lies inside the tensor, and the distinct boxes neither overlap nor leave a
    /// gap (identical boxes are copies of one replicated piece).
    func validateTiling(worldSize: Int) throws(CheckpointError) {
        func bad(_ message: String) -> CheckpointError {
            CheckpointError(.malformed, "tensor \"\(path)\" \(shape): \(message)")
        }
        guard shape.allSatisfy({ $0 >= 0 }), !pieces.isEmpty else { throw bad("has a negative size or no pieces") }
        var boxes: [TensorSlice] = []
        for piece in pieces {
            guard (0..<worldSize).contains(piece.rank) else { throw bad("has a piece on rank \(piece.rank), outside the world") }
            let box = slice(of: piece)
            if let problem = box.problem() { throw bad("rank \(piece.rank)'s piece \(problem)") }
            if !boxes.contains(box) { boxes.append(box) }
        }
        for (index, box) in boxes.enumerated() {
            for other in boxes[..<index] where box.intersection(other) != nil {
                throw bad("pieces \(other) and \(box) overlap without being the same box")
            }
        }
        let covered = boxes.reduce(0) { $0 + $1.elementCount }
        let total = shape.reduce(1, *)
        guard covered == total else {
            throw bad("its pieces cover \(covered) of its \(total) elements; the shards do not make up the tensor")
        }
    }
}

/// One key of a tensor's path in a manifest: a JSON string or a JSON integer.
public enum ManifestKey: Codable, Sendable, Equatable {
    case string(String)
    case int(Int)

    init(_ key: StateKey) {
        switch key {
        case .string(let text): self = .string(text)
        case .int(let value): self = .int(value)
        }
    }

    var stateKey: StateKey {
        switch self {
        case .string(let text): .string(text)
        case .int(let value): .int(value)
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .int(let value): try container.encode(value)
        }
    }
}
