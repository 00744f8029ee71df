import Foundation
import Logging

/// A sharded saver's checkpoints in an object store: how a multi-node run whose nodes share no
/// disk checkpoints and resumes (the DocC articles "Sharded checkpoints" and "Object storage").
///
/// Every rank uploads its own shard; rank 0 uploads the manifest once every rank's upload is
/// confirmed, then moves the remote latest pointer (`latest-rank0.symlink`, naming the
/// manifest) and keeps the remote list of checkpoints (`.checkpoints-rank0.json`), pruning the
/// oldest manifest first, then its shards. With local copies (``keepsLocalCopies``) each rank
/// first commits the checkpoint in its own local folder as an unsharded-disk save would, then
/// uploads that file; without, each rank writes its shard to a staging file that is removed
/// once uploaded.
final class RemoteShardedCheckpoints: Sendable {
    /// This rank's remote folder.
    let folder: ObjectLocation
    /// Rank 0's remote folder, where the manifests, the pointer and the list are.
    let rankZeroFolder: ObjectLocation
    /// Whether each rank keeps a local copy of its shards (``CheckpointSaver/Options/checkpointsToKeep``
    /// is not 0).
    let keepsLocalCopies: Bool
    /// Rank 0's pointer, list and pruning; `nil` on the other ranks.
    let records: RemoteCheckpoints?

    init(folder: ObjectLocation, rankZeroFolder: ObjectLocation, keep: Int, latestName: String?, keepsLocalCopies: Bool, rank: Int) {
        self.folder = folder
        self.rankZeroFolder = rankZeroFolder
        self.keepsLocalCopies = keepsLocalCopies
        records = rank == 0 ? RemoteCheckpoints(folder: rankZeroFolder, keep: keep, latestName: latestName, rank: 0) : nil
    }

    /// The manifest in the store of the checkpoint whose rank-0 shard is `rankZeroShard`
    /// (relative to rank 0's folder).
    func manifestURL(rankZeroShard: String) -> String {
        rankZeroFolder.appending(rankZeroShard + ShardManifest.suffix).description
    }

    /// Whether the store holds the manifest at `url`: a committed checkpoint of that name.
    func holdsManifest(_ url: String) throws(CheckpointError) -> Bool {
        guard let location = ObjectLocation(url) else { return false }
        return try ObjectStores.store(for: location).info(location) != nil
    }

    /// Saves `tree` as this rank's shard `relative` (to ``folder``) straight to the store, with
    /// no local copy, and on rank 0 records the committed checkpoint. Returns this rank's
    /// shard size.
    func saveWithoutLocalCopy(
        _ tree: StateValue, relative: String, position: CheckpointPosition, values: FilenameValues, ignoreKeys: IgnoreKeys?,
        compression: CompressionOptions, limits: ReadingLimits, sharding: Sharding, processGroup group: any ProcessGroup
    ) throws(CheckpointError) -> Int {
        let saved = try ShardedSave.save(
            tree, rendered: folder.appending(relative).description, values: values, ignoreKeys: ignoreKeys, compression: compression,
            limits: limits, sharding: sharding, processGroup: group)
        try records?.record(relative + ShardManifest.suffix, position: position)
        return saved.sizes[group.rank]
    }

    /// What a rank tells rank 0 after uploading its local shard.
    private struct UploadReport: Codable {
        var location: String
        var size = 0
        var etag: String?
        var error: RankError?
    }

    /// Uploads this rank's committed local shard as `relative` (to ``folder``) and commits the
    /// checkpoint in the store: rank 0 uploads a manifest made from its local one
    /// (`localManifest`), with every shard's object and ETag, once every rank's upload is
    /// confirmed, then records it. When any rank fails, the uploaded shards are deleted
    /// where the store can be reached and the local checkpoint stays as it was.
    func upload(
        localShard: String, relative: String, position: CheckpointPosition, localManifest: String, processGroup group: any ProcessGroup
    ) throws(CheckpointError) {
        let target = folder.appending(relative)
        var report = UploadReport(location: target.description)
        var failure: CheckpointError?
        do throws(CheckpointError) {
            let store = try ObjectStores.store(for: target)
            if group.rank == 0 {
                // A manifest of that name would describe shards this upload is replacing.
                try store.delete(folder.appending(relative + ShardManifest.suffix))
            }
            let uploaded = try store.upload(file: localShard, to: target)
            report.size = uploaded.size
            report.etag = try RemoteShards.confirmUpload(target, size: uploaded.size).etag
        } catch {
            report.error = RankError(error, rank: group.rank)
            failure = error
        }
        let reports = try group.allGather(ShardedSave.encode(report), timeout: group.collectiveTimeout).enumerated().map { (rank, bytes) throws(CheckpointError) in
            try ShardedSave.decode(UploadReport.self, bytes, from: rank)
        }
        // Beside rank 0's shard.
        let manifestURL = reports[0].location + ShardManifest.suffix
        try ShardedCommit.finish(
            errors: reports.map(\.error), failure: failure, discard: report.error == nil ? target.description : nil,
            manifestPath: manifestURL, what: "uploaded its shard", group: group
        ) { () throws(CheckpointError) in
            var manifest = try ShardManifest.read(localManifest)
            let manifestFolder = StoragePaths.folder(of: manifestURL)
            guard manifest.shards.count == reports.count else {
                throw CheckpointError(
                    .distributed, "the local manifest lists \(manifest.shards.count) shards but \(reports.count) ranks uploaded one",
                    path: localManifest)
            }
            for (rank, uploaded) in reports.enumerated() {
                guard manifest.shards[rank].size == uploaded.size,
                    let path = StoragePaths.relative(uploaded.location, from: manifestFolder)
                else {
                    throw CheckpointError(
                        .distributed,
                        "rank \(rank) uploaded \(uploaded.size) bytes to \(uploaded.location), which is not the \(manifest.shards[rank].size)-byte shard the local manifest lists, or not in the manifest's bucket",
                        path: localManifest)
                }
                manifest.shards[rank].path = path
                manifest.shards[rank].etag = uploaded.etag
            }
            try manifest.write(to: manifestURL)
        }
        try records?.record(relative + ShardManifest.suffix, position: position)
    }

    /// The committed checkpoints of the run `runName` in rank 0's folder (and below it),
    /// newest batch first, by manifest URL: what rank 0 offers every rank to resume from. A
    /// manifest that cannot be read is skipped with a warning.
    func resumeCandidates(runName: String) throws(CheckpointError) -> [(url: String, batch: Int)] {
        var prefix = rankZeroFolder
        if !prefix.key.isEmpty && !prefix.key.hasSuffix("/") { prefix.key += "/" }
        let listing = try ObjectStores.store(for: prefix).list(prefix, delimiter: nil)
        var found: [(url: String, batch: Int)] = []
        for object in listing.objects where object.location.key.hasSuffix(ShardManifest.suffix) {
            let url = object.location.description
            let manifest: ShardManifest
            do {
                manifest = try ShardManifest.read(url)
            } catch {
                logger.warning("autoresume: skipping \(url), which is not a readable manifest: \(error)")
                continue
            }
            if !runName.isEmpty && !manifest.runName.isEmpty && manifest.runName != runName { continue }
            found.append((url, manifest.batch))
        }
        return found.sorted { ($0.batch, $0.url) > ($1.batch, $1.url) }
    }
}
