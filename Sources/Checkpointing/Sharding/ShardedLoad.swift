/// Loading a sharded checkpoint on any number of ranks.
///
/// Every rank reads the manifest, takes the tree of non-tensor values from rank 0's shard, and
/// for every tensor asks the ``ShardPlan`` which box it needs; it then opens only the shards
/// whose pieces overlap that box and copies only the overlap. Shards are memory-mapped, so the
/// bytes read are those of the pieces used (and, when checksums are verified, of the tensors
/// they come from). A box that is exactly one saved piece is that piece's mapping: no copy.
///
/// Shards in an object store are read in pieces (``RangedCheckpoint``): each shard's index,
/// then, in parallel ranged GETs, only the pieces that overlap this rank's boxes, each checked
/// against its checksum. A compressed shard cannot be entered midway and is downloaded whole.
///
/// The reporter in scope gets one phase, `loading`, over the bytes of the saved pieces the rank
/// reads, counted as each is read (and checked): the shards' own steps (decompressing,
/// downloading, verifying) would each restart a progress bar.
enum ShardedLoad {
    static func read(
        manifestAt manifestPath: String, plan: ShardPlan, verifyChecksums: Bool, limits: ReadingLimits,
        processGroup group: any ProcessGroup
    ) throws(CheckpointError) -> (tree: StateValue, sharding: Sharding) {
        let progress = CheckpointProgress.current
        return try CheckpointProgress.withoutReporting { () throws(CheckpointError) in
            try read(
                manifestAt: manifestPath, plan: plan, verifyChecksums: verifyChecksums, limits: limits, processGroup: group,
                progress: progress)
        }
    }

    private static func read(
        manifestAt manifestPath: String, plan: ShardPlan, verifyChecksums: Bool, limits: ReadingLimits,
        processGroup group: any ProcessGroup, progress: CheckpointProgress?
    ) throws(CheckpointError) -> (tree: StateValue, sharding: Sharding) {
        let manifest = try ShardManifest.read(manifestPath)
        if plan.keepsSavedPieces && manifest.worldSize != group.worldSize {
            throw CheckpointError(
                .distributed,
                "was saved by \(manifest.worldSize) ranks and this run has \(group.worldSize): each rank cannot get back what it saved; resume on \(manifest.worldSize) ranks, or load with a shard plan that reshards (such as .splitFirstDimension)",
                path: manifestPath)
        }
        var shards = Shards(
            manifest: manifest, manifestPath: manifestPath, verifyChecksums: verifyChecksums, limits: limits, progress: progress)

        var wanted: [(entry: ShardManifest.TensorEntry, box: TensorSlice, sources: [Source])] = []
        for entry in manifest.tensors {
            guard let box = Self.box(of: entry, plan: plan, processGroup: group) else { continue }
            guard box.globalShape == entry.shape else {
                throw CheckpointError(
                    .invalidArgument,
                    "the shard plan gave tensor \"\(entry.path)\" the global shape \(box.globalShape), but it is \(entry.shape)",
                    path: manifestPath)
            }
            if let problem = box.problem() {
                throw CheckpointError(.invalidArgument, "the shard plan's slice of \"\(entry.path)\" \(problem)", path: manifestPath)
            }
            wanted.append((entry, box, sources(of: entry, for: box, preferring: group.rank % manifest.worldSize)))
        }
        if let progress {
            var total = 0
            for (entry, _, sources) in wanted {
                for source in sources { total += try Tensor.byteCount(dtype: entry.dtype, shape: source.slice.shape) }
            }
            progress.begin("loading", totalBytes: total)
        }
        defer { progress?.finish() }
        let skeleton = try shards.file(rank: 0).tree
        try shards.prefetch(wanted.flatMap { want in want.sources.map { (entry: want.entry, rank: $0.rank) } })

        var assembled: [String: Tensor] = [:]
        var slices: [String: TensorSlice] = [:]
        var placement: [(keys: [StateKey], path: String)] = []
        for (entry, box, sources) in wanted {
            if !box.isWhole { slices[entry.path] = box }
            assembled[entry.path] = try assemble(entry, box: box, from: sources, shards: &shards)
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

    /// A saved piece a box is read from.
    private typealias Source = (slice: TensorSlice, rank: Int)

    /// The pieces `box` is read from: the saved piece that is exactly the box, if there is one,
    /// else every piece that overlaps it; one holder per distinct piece (replicated pieces are
    /// read once, from the preferred rank if it holds one).
    private static func sources(of entry: ShardManifest.TensorEntry, for box: TensorSlice, preferring preferred: Int) -> [Source] {
        var sources: [Source] = []
        for piece in entry.pieces {
            let slice = entry.slice(of: piece)
            if let index = sources.firstIndex(where: { $0.slice == slice }) {
                if piece.rank == preferred { sources[index].rank = preferred }
            } else {
                sources.append((slice, piece.rank))
            }
        }
        if let exact = sources.first(where: { $0.slice == box }) { return [exact] }
        return sources.filter { $0.slice.intersection(box) != nil }
    }

    /// The `box` of one tensor, from the pieces that overlap it.
    private static func assemble(
        _ entry: ShardManifest.TensorEntry, box: TensorSlice, from sources: [Source], shards: inout Shards
    ) throws(CheckpointError) -> Tensor {
        if let exact = sources.first, exact.slice == box {
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

    /// A shard opened by a load.
    struct OpenedShard {
        var file: CheckpointFile
        /// What fetches the tensors of a shard read in pieces from an object store; `nil` for
        /// a local shard, or one downloaded whole.
        var ranged: RangedCheckpoint?
    }

    /// Opens `rank`'s shard and checks that it is the file the manifest committed: its size,
    /// and the digest of its index (which covers, through the checksums it holds, every byte).
    /// With `inPieces`, a shard in an object store is opened from its index alone when it can be.
    static func openShard(
        rank: Int, of manifest: ShardManifest, manifestPath: String, limits: ReadingLimits, inPieces: Bool = false
    ) throws(CheckpointError) -> OpenedShard {
        let recorded = manifest.shards[rank]
        let path = manifest.shardPath(rank: rank, manifestPath: manifestPath)
        var ranged: RangedCheckpoint?
        let file: CheckpointFile
        do throws(CheckpointError) {
            if inPieces, case .remote(let location) = StoragePath(path) {
                ranged = try RangedCheckpoint.open(location, limits: limits)
            }
            if let ranged {
                file = ranged.file
            } else {
                file = try CheckpointFile.open(path, limits: limits)
            }
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
        return OpenedShard(file: file, ranged: ranged)
    }

    /// The shards opened so far, each opened (and checked against the manifest) on first use.
    private struct Shards {
        let manifest: ShardManifest
        let manifestPath: String
        let verifyChecksums: Bool
        let limits: ReadingLimits
        /// Counts the bytes of each piece once it is read.
        let progress: CheckpointProgress?
        private var opened: [Int: OpenedShard] = [:]
        private var verified = Set<String>()

        init(manifest: ShardManifest, manifestPath: String, verifyChecksums: Bool, limits: ReadingLimits, progress: CheckpointProgress?) {
            self.manifest = manifest
            self.manifestPath = manifestPath
            self.verifyChecksums = verifyChecksums
            self.limits = limits
            self.progress = progress
        }

        mutating func shard(rank: Int) throws(CheckpointError) -> OpenedShard {
            if let shard = opened[rank] { return shard }
            try CancellationFlag.current?.check("loading shards", path: manifestPath)
            let shard = try ShardedLoad.openShard(
                rank: rank, of: manifest, manifestPath: manifestPath, limits: limits, inPieces: true)
            if verifyChecksums, shard.ranged == nil, shard.file.checksums.isEmpty {
                try shard.file.verify()  // a torch shard: every record's CRC-32
            }
            opened[rank] = shard
            return shard
        }

        mutating func file(rank: Int) throws(CheckpointError) -> CheckpointFile { try shard(rank: rank).file }

        /// Fetches, shard by shard, the pieces of shards read in pieces that these tensors
        /// need, each shard's in parallel ranged GETs, checking each piece.
        mutating func prefetch(_ pieces: [(entry: ShardManifest.TensorEntry, rank: Int)]) throws(CheckpointError) {
            for rank in Set(pieces.map(\.rank)).sorted() {
                let shard = try shard(rank: rank)
                guard let ranged = shard.ranged else { continue }
                var tensors: [(path: String, tensor: Tensor)] = []
                for (entry, pieceRank) in pieces where pieceRank == rank && verified.insert("\(rank)/\(entry.path)").inserted {
                    guard let tensor = shard.file.tree[path: entry.path]?.tensorValue else {
                        throw CheckpointError(
                            .malformed, "holds no tensor \"\(entry.path)\", which the manifest says it does", path: shard.file.path)
                    }
                    tensors.append((entry.path, tensor))
                }
                try ranged.fetch(tensors, verify: verifyChecksums)
                progress?.advance(by: tensors.reduce(0) { $0 + $1.tensor.byteCount })
            }
        }

        /// `rank`'s piece of `entry`, checked against the manifest (and its checksum).
        mutating func tensor(_ entry: ShardManifest.TensorEntry, rank: Int, slice: TensorSlice) throws(CheckpointError) -> Tensor {
            try CancellationFlag.current?.check("loading shards", path: manifestPath)
            let shard = try shard(rank: rank)
            let file = shard.file
            guard let tensor = file.tree[path: entry.path]?.tensorValue else {
                throw CheckpointError(.malformed, "holds no tensor \"\(entry.path)\", which the manifest says it does", path: file.path)
            }
            guard tensor.dtype == entry.dtype, tensor.shape == slice.shape else {
                throw CheckpointError(
                    .malformed,
                    "tensor \"\(entry.path)\" is \(tensor.dtype.rawValue) \(tensor.shape) but the manifest says \(entry.dtype.rawValue) \(slice.shape)",
                    path: file.path)
            }
            let unchecked = verified.insert("\(rank)/\(entry.path)").inserted
            if let ranged = shard.ranged {
                if unchecked { try ranged.fetch([(entry.path, tensor)], verify: verifyChecksums) }
            } else if verifyChecksums, !file.checksums.isEmpty, unchecked, let failure = file.verify(tensor, named: entry.path) {
                throw failure
            }
            if unchecked { progress?.advance(by: tensor.byteCount) }
            return tensor
        }
    }
}
