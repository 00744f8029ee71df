import Foundation
import Logging

/// A sharded save: every rank writes its own tarball in parallel, then rank 0
/// commits the checkpoint by writing its manifest once every rank has reported success.
///
/// Three collectives, each bounded by the group's timeout:
/// 1. every rank checks its inputs and shares its path; if any rank's inputs are bad, no rank
///    writes anything;
/// 2. every rank writes its shard and shares the outcome (size, digest, tensor boxes);
/// 3. rank 0 checks that the boxes tile every tensor, writes the manifest, and shares the
///    outcome. A rank that died or hangs makes the others fail with a timeout; no manifest is
///    written, so the previous checkpoint stays the newest complete one.
///
/// In an object store (`s3://...` names) each rank writes its shard to its own staging file
/// and uploads it (multipart, parallel parts, the store's retries), then reports its size and
/// the ETag the store shows; the manifest is uploaded last. A shard of a save that is not
/// committed is deleted where the store can still be reached, and is never loaded (no
/// manifest names it). A rank whose own write or upload failed throws its own error (a 403 is
/// `.permissionDenied`); the others throw that same error, received from it: its code, path
/// and errno, with ``CheckpointError/rank`` naming it.
enum ShardedSave {
    /// What a rank tells the others before writing.
    private struct Plan: Codable {
        var path: String?
        var error: RankError?
    }

    /// What a rank tells rank 0 after writing.
    private struct Report: Codable {
        struct Entry: Codable {
            var path: String
            var keys: [ManifestKey]
            var dtype: DType
            var slice: TensorSlice
        }
        var size: Int = 0
        var digest: String = ""
        /// The ETag of an uploaded shard.
        var etag: String?
        var tensors: [Entry] = []
        var error: RankError?
    }

    /// Refuses what no sharded save allows, the same way on every rank (no collective needed).
    static func check(template: FilenameTemplate, weightsOnly: Bool) throws(CheckpointError) {
        guard template.contains(.rank) else {
            throw CheckpointError(
                .invalidTemplate,
                "a sharded save needs {rank} in the file name, or every rank would write the same file: \"\(template.pattern)\"; for example \"ep{epoch}-ba{batch}-rank{rank}\"")
        }
        guard !weightsOnly else {
            throw CheckpointError(
                .invalidArgument,
                "a sharded save cannot be weights-only: each rank holds only part of the model; save the full checkpoint sharded, then `ckpt convert --weights-only` it")
        }
    }

    /// Saves this rank's `tree` at `rendered` (its file name, already rendered for this rank and
    /// checked with ``check(template:weightsOnly:)``) and commits the checkpoint with the others.
    /// Returns every rank's shard path and size, by rank.
    static func save(
        _ tree: StateValue, rendered: String, values: FilenameValues, ignoreKeys: IgnoreKeys?,
        compression: CompressionOptions, limits: ReadingLimits, sharding: Sharding, processGroup group: any ProcessGroup
    ) throws(CheckpointError) -> (paths: [String], sizes: [Int]) {
        let timeout = group.collectiveTimeout

        // 1. Check this rank's inputs; every rank learns every rank's path and problems.
        var selected = tree
        var entries: [Report.Entry] = []
        let path = shardPath(rendered)
        var plan = Plan(path: path)
        var problem: CheckpointError?
        do throws(CheckpointError) {
            if let ignoreKeys {
                for pattern in try ignoreKeys.apply(to: &selected) {
                    logger.warning("ignore-keys pattern \"\(pattern)\" matched nothing in rank \(group.rank)'s shard")
                }
            }
            try limits.checkDepth(of: selected)
            entries = try boxes(of: selected, sharding: sharding)
        } catch {
            plan = Plan(error: RankError(error, rank: group.rank))
            problem = error
        }
        let plans = try group.allGather(encode(plan), timeout: timeout).enumerated().map { (rank, bytes) throws(CheckpointError) in
            try decode(Plan.self, bytes, from: rank)
        }
        if let problem { throw problem }
        if let refused = RankError.combined(plans.map(\.error), outcome: "the sharded save was refused before any rank wrote") {
            throw refused
        }
        let paths = plans.map { $0.path ?? "" }
        guard Set(paths).count == paths.count else {
            throw CheckpointError(.invalidTemplate, "ranks would write the same file (\(paths.joined(separator: ", "))); the template must make one name per rank")
        }
        let manifestPath = ShardManifest.path(forRankZeroShard: paths[0])
        let manifestFolder = StoragePaths.folder(of: manifestPath)
        let relativePaths = paths.compactMap { StoragePaths.relative($0, from: manifestFolder) }
        guard relativePaths.count == paths.count else {
            throw CheckpointError(
                .invalidTemplate,
                "every rank's shard must be in the same place as rank 0's (on this machine's disks, or in rank 0's bucket), so that the manifest can name it: \(paths.joined(separator: ", "))")
        }

        // 2. Write this rank's shard. A failure is reported, not thrown: the others wait for it.
        var report = Report(tensors: entries)
        var failure: CheckpointError?
        do throws(CheckpointError) {
            if group.rank == 0 {
                // A manifest of that name would describe shards this save is replacing.
                try removeStaleManifest(manifestPath)
            }
            let saved: SavedFile
            switch SaveTarget(path: path).format {
            case .native: saved = try NativeFormat.save(selected, to: path, compression: compression)
            case .torch: saved = try TorchFormat.save(selected, to: path, compression: compression)
            }
            report.size = saved.byteCount
            report.digest = TensorChecksum.hex(saved.digest)
            if case .remote(let location) = StoragePath(path) {
                report.etag = try RemoteShards.confirmUpload(location, size: saved.byteCount).etag
            }
        } catch {
            report.error = RankError(error, rank: group.rank)
            failure = error
        }
        let gathered: [[UInt8]]
        do throws(CheckpointError) {
            gathered = try group.allGather(encode(report), timeout: timeout)
        } catch {
            // Rank 0, the committer, gave up on a rank that died or hangs: nothing will be
            // committed, so the shards already uploaded are garbage in the store. (Another rank
            // cannot know that rank 0 gave up too, so it leaves its shard; local shards stay,
            // uncommitted, to be overwritten by the next save of that name.)
            if group.rank == 0 { paths.filter(StoragePaths.isRemote).forEach(RemoteShards.discard) }
            throw error
        }
        let reports = try gathered.enumerated().map { (rank, bytes) throws(CheckpointError) in try decode(Report.self, bytes, from: rank) }

        // 3. Rank 0 commits.
        try ShardedCommit.finish(
            errors: reports.map(\.error), failure: failure, discard: report.error == nil ? path : nil, manifestPath: manifestPath,
            what: "wrote its shard", group: group
        ) { () throws(CheckpointError) in
            try makeManifest(reports: reports, relativePaths: relativePaths, values: values).write(to: manifestPath)
        }
        logger.debug("saved sharded checkpoint", metadata: ["manifest": "\(manifestPath)", "shard": "\(path)"])
        return (paths, reports.map(\.size))
    }

    /// A shard's path: the rendered name, with `.tar` added before any compression when the
    /// name names no tar: `rank0` → `rank0.tar`, `rank0.pt.zst` → `rank0.pt.tar.zst`.
    static func shardPath(_ rendered: String) -> String {
        let target = SaveTarget(path: rendered)
        guard !target.tar else { return rendered }
        guard target.compression != nil, let dot = rendered.lastIndex(of: ".") else { return rendered + ".tar" }
        return rendered[..<dot] + ".tar" + rendered[dot...]
    }

    /// The box of every tensor this rank holds, checked against `sharding`.
    private static func boxes(of tree: StateValue, sharding: Sharding) throws(CheckpointError) -> [Report.Entry] {
        var entries: [Report.Entry] = []
        var unused = Set(sharding.slices.keys)
        try rethrowingCheckpointError {
            try tree.forEachTensorWithKeys { keys, path, tensor in
                unused.remove(path)
                let slice = sharding.slices[path] ?? .whole(tensor.shape)
                if let problem = slice.problem() {
                    throw CheckpointError(.invalidArgument, "the slice of \"\(path)\" \(problem)")
                }
                guard slice.shape == tensor.shape else {
                    throw CheckpointError(
                        .invalidArgument, "tensor \"\(path)\" has shape \(tensor.shape) but its slice says \(slice.shape)")
                }
                entries.append(Report.Entry(path: path, keys: keys.map(ManifestKey.init), dtype: tensor.dtype, slice: slice))
            }
        }
        guard unused.isEmpty else {
            throw CheckpointError(
                .invalidArgument,
                "the sharding names paths that hold no tensor: \(unused.sorted().prefix(10).joined(separator: ", "))")
        }
        return entries
    }

    /// The manifest of the reports, checked: one dtype and global shape per tensor, pieces
    /// that tile it.
    private static func makeManifest(
        reports: [Report], relativePaths: [String], values: FilenameValues
    ) throws(CheckpointError) -> ShardManifest {
        let shards = reports.enumerated().map { rank, report in
            ShardManifest.Shard(rank: rank, path: relativePaths[rank], size: report.size, digest: report.digest, etag: report.etag)
        }
        var order: [String] = []
        var tensors: [String: ShardManifest.TensorEntry] = [:]
        for (rank, report) in reports.enumerated() {
            for entry in report.tensors {
                let piece = ShardManifest.Piece(rank: rank, offset: entry.slice.offset, shape: entry.slice.shape)
                if var known = tensors[entry.path] {
                    guard known.dtype == entry.dtype, known.shape == entry.slice.globalShape else {
                        throw CheckpointError(
                            .invalidArgument,
                            "ranks disagree on tensor \"\(entry.path)\": \(known.dtype.rawValue) \(known.shape) on rank \(known.pieces[0].rank), \(entry.dtype.rawValue) \(entry.slice.globalShape) on rank \(rank)")
                    }
                    known.pieces.append(piece)
                    tensors[entry.path] = known
                } else {
                    order.append(entry.path)
                    tensors[entry.path] = ShardManifest.TensorEntry(
                        path: entry.path, keys: entry.keys, dtype: entry.dtype, shape: entry.slice.globalShape, pieces: [piece])
                }
            }
        }
        let manifest = ShardManifest(
            worldSize: reports.count, runName: values.runName, epoch: values.epoch, batch: values.batch, shards: shards,
            tensors: order.map { tensors[$0]! })
        do {
            try manifest.validate()
        } catch {
            throw CheckpointError(.invalidArgument, "the shards do not make up a checkpoint: \(error.message)")
        }
        return manifest
    }

    private static func removeStaleManifest(_ path: String) throws(CheckpointError) {
        if case .remote(let location) = StoragePath(path) {
            try ObjectStores.store(for: location).delete(location)
            return
        }
        guard try SystemCalls.unlink(path) else { return }
        try SystemCalls.fsyncDirectory(FilePaths.split(path).folder)
    }

    static func encode(_ value: some Encodable) throws(CheckpointError) -> [UInt8] {
        do { return Array(try JSONEncoder().encode(value)) } catch {
            throw CheckpointError(.distributed, "cannot encode a message to the other ranks: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], from rank: Int) throws(CheckpointError) -> T {
        do { return try JSONDecoder().decode(type, from: Data(bytes)) } catch {
            throw CheckpointError(.distributed, "rank \(rank) sent a message this rank cannot read (\(error)); do all ranks run the same build?")
        }
    }
}
