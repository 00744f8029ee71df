/// Loading a sharded checkpoint on any number of ranks.
///
/// Every rank reads the manifest, takes the tree of non-tensor values from rank 0's shard, and
/// for every tensor asks the ``ShardPlan`` which box it needs; it then opens only the shards
/// whose pieces overlap that box and copies only the overlap. Shards are memory-mapped, so the
/// bytes read are those of the pieces used (and, when checksums are verified, of the tensors
/// they come from). A box that is exactly one saved piece is that piece's mapping: no copy.
enum ShardedLoad {
    static func read(
        manifestAt manifestPath: String, plan: ShardPlan, verifyChecksums: Bool, decompressionLimits: DecompressionLimits,
        processGroup group: any ProcessGroup
    ) throws(CheckpointError) -> (tree: StateValue, sharding: Sharding) {
        let manifest = try ShardManifest.read(manifestPath)
        if plan.keepsSavedPieces && manifest.worldSize != group.worldSize {
            throw CheckpointError(
                .distributed,
                "was saved by \(manifest.worldSize) ranks and this run has \(group.worldSize): each rank cannot get back what it saved; resume on \(manifest.worldSize) ranks, or load with a shard plan that reshards (such as .splitFirstDimension)",
                path: manifestPath)
        }
        var shards = Shards(
            manifest: manifest, manifestPath: manifestPath, verifyChecksums: verifyChecksums, decompressionLimits: decompressionLimits)
        let skeleton = try shards.file(rank: 0).tree

        var assembled: [String: Tensor] = [:]
        var slices: [String: TensorSlice] = [:]
        var placement: [(keys: [StateKey], path: String)] = []
        for entry in manifest.tensors {
            guard let wanted = box(of: entry, plan: plan, processGroup: group) else { continue }
            guard wanted.globalShape == entry.shape else {
                throw CheckpointError(
                    .invalidArgument,
                    "the shard plan gave tensor \"\(entry.path)\" the global shape \(wanted.globalShape), but it is \(entry.shape)",
                    path: manifestPath)
            }
            if let problem = wanted.problem() {
                throw CheckpointError(.invalidArgument, "the shard plan's slice of \"\(entry.path)\" \(problem)", path: manifestPath)
            }
            if !wanted.isWhole { slices[entry.path] = wanted }
            assembled[entry.path] = try assemble(entry, box: wanted, from: &shards, preferring: group.rank % manifest.worldSize)
            placement.append((entry.keys.map(\.stateKey), entry.path))
        }

        // Rank 0's tree with its tensors replaced by this rank's boxes (or left out), then the
        // tensors rank 0 does not hold, placed by their keys.
        var present = Set<String>()
        var tree = skeleton.mappingTensors { path, _ in
            present.insert(path)
            return assembled[path]
        } ?? .none
        for (keys, path) in placement where !present.contains(path) {
            do {
                tree = try tree.inserting(.tensor(assembled[path]!), at: keys[...])
            } catch {
                throw error.at(path: manifestPath)
            }
        }
        return (tree, Sharding(slices: slices))
    }

    /// The box of `entry` this rank gets under `plan`, or `nil` for none.
    private static func box(of entry: ShardManifest.TensorEntry, plan: ShardPlan, processGroup group: any ProcessGroup) -> TensorSlice? {
        plan.keepsSavedPieces
            ? entry.pieces.first { $0.rank == group.rank }.map(entry.slice(of:))
            : plan.slice(entry.path, entry.shape, group.rank, group.worldSize)
    }

    /// The `box` of one tensor, from the pieces that overlap it.
    private static func assemble(
        _ entry: ShardManifest.TensorEntry, box: TensorSlice, from shards: inout Shards, preferring preferred: Int
    ) throws(CheckpointError) -> Tensor {
        // One holder per distinct box: replicated pieces are read once, from the preferred rank if it has one.
        var sources: [(slice: TensorSlice, rank: Int)] = []
        for piece in entry.pieces {
            let slice = entry.slice(of: piece)
            if let index = sources.firstIndex(where: { $0.slice == slice }) {
                if piece.rank == preferred { sources[index].rank = preferred }
            } else {
                sources.append((slice, piece.rank))
            }
        }
        if let exact = sources.first(where: { $0.slice == box }) {
            return try shards.tensor(entry, rank: exact.rank, slice: exact.slice)
        }
        let byteCount = try Tensor.byteCount(dtype: entry.dtype, shape: box.shape)
        let buffer = TensorBuffer.allocate(byteCount: byteCount, zeroed: false)
        let destination = UnsafeMutableRawBufferPointer(mutating: buffer.bytes)
        for source in sources {
            guard let overlap = source.slice.intersection(box) else { continue }
            let piece = try shards.tensor(entry, rank: source.rank, slice: source.slice)
            piece.withUnsafeBytes { bytes in
                SliceCopy.copy(
                    overlap, from: bytes, source: source.slice, to: destination, destination: box,
                    elementSize: entry.dtype.byteSize)
            }
        }
        return Tensor(dtype: entry.dtype, shape: box.shape, buffer: buffer)
    }

    /// Opens `rank`'s shard and checks that it is the file the manifest committed: its size,
    /// and the digest of its index (which covers, through the checksums it holds, every byte).
    static func openShard(
        rank: Int, of manifest: ShardManifest, manifestPath: String, limits: DecompressionLimits
    ) throws(CheckpointError) -> CheckpointFile {
        let recorded = manifest.shards[rank]
        let path = manifest.shardPath(rank: rank, manifestPath: manifestPath)
        let file: CheckpointFile
        do {
            file = try CheckpointFile.open(path, decompressionLimits: limits)
        } catch where error.code == .notFound {
            throw CheckpointError(.notFound, "rank \(rank)'s shard, which the manifest \(manifestPath) lists, is missing", path: path)
        }
        let digest = TensorChecksum.hex(file.integrityDigest)
        guard file.byteCount == recorded.size, digest == recorded.digest.lowercased() else {
            let found = file.byteCount == recorded.size ? "digest \(digest)" : "\(file.byteCount) bytes"
            let expected = file.byteCount == recorded.size ? "digest \(recorded.digest)" : "\(recorded.size)"
            throw CheckpointError(
                .checksumMismatch,
                "is not the shard the manifest committed (\(found), the manifest recorded \(expected)): it was changed or replaced after the checkpoint was saved",
                path: path)
        }
        return file
    }

    /// The shards opened so far, each opened (and checked against the manifest) on first use.
    private struct Shards {
        let manifest: ShardManifest
        let manifestPath: String
        let verifyChecksums: Bool
        let decompressionLimits: DecompressionLimits
        private var files: [Int: CheckpointFile] = [:]
        private var verified = Set<String>()

        init(manifest: ShardManifest, manifestPath: String, verifyChecksums: Bool, decompressionLimits: DecompressionLimits) {
            self.manifest = manifest
            self.manifestPath = manifestPath
            self.verifyChecksums = verifyChecksums
            self.decompressionLimits = decompressionLimits
        }

        mutating func file(rank: Int) throws(CheckpointError) -> CheckpointFile {
            if let file = files[rank] { return file }
            let file = try ShardedLoad.openShard(rank: rank, of: manifest, manifestPath: manifestPath, limits: decompressionLimits)
            if verifyChecksums, file.checksums.isEmpty {
                try file.verify()  // a torch shard: every record's CRC-32
            }
            files[rank] = file
            return file
        }

        /// `rank`'s piece of `entry`, checked against the manifest (and its checksum).
        mutating func tensor(_ entry: ShardManifest.TensorEntry, rank: Int, slice: TensorSlice) throws(CheckpointError) -> Tensor {
            let file = try file(rank: rank)
            guard let tensor = file.tree[path: entry.path]?.tensorValue else {
                throw CheckpointError(.malformed, "holds no tensor \"\(entry.path)\", which the manifest says it does", path: file.path)
            }
            guard tensor.dtype == entry.dtype, tensor.shape == slice.shape else {
                throw CheckpointError(
                    .malformed,
                    "tensor \"\(entry.path)\" is \(tensor.dtype.rawValue) \(tensor.shape) but the manifest says \(entry.dtype.rawValue) \(slice.shape)",
                    path: file.path)
            }
            if verifyChecksums, !file.checksums.isEmpty, verified.insert("\(rank)/\(entry.path)").inserted,
                let failure = file.verify(tensor, named: entry.path)
            {
                throw failure
            }
            return tensor
        }
    }
}
