import Checkpointing
import CheckpointToolSupport
import CheckpointingS3
import Foundation

/// `ckpt ls s3://bucket/prefix/`: the checkpoints one level below a prefix, as `ckpt ls` shows a
/// folder, plus the "folders" below it.
///
/// Objects appear whole or not at all, so every listed object is complete as uploaded. Each
/// one's format, epoch and batch come from its index alone, fetched with ranged requests
/// (``CheckpointFile/openIndex(_:limits:)``). A sharded checkpoint is one row, its
/// manifest, complete when every shard it lists is in the store at its recorded size; its
/// shards are not listed. `--verify` downloads and verifies each checkpoint whole.
struct RemoteListing {
    var url: String
    var verify: Bool
    var pageSize: Int?
    var limits: ReadingLimits

    func entries() throws -> (entries: [LsCommand.Entry], folders: [String]) {
        guard var prefix = ObjectLocation(url) else { throw CommandFailure("\(url) is not an object-store URL") }
        if !prefix.key.isEmpty && !prefix.key.hasSuffix("/") { prefix.key += "/" }
        let store = try listingStore(for: prefix)
        let listing = try store.list(prefix, delimiter: "/")

        // Every `.symlink` object below the prefix counts as a latest pointer, as symlinks do locally.
        var latestKeys = Set<String>()
        for object in listing.objects where object.location.name.hasSuffix(".symlink") {
            if let target = try? store.read(object.location, range: nil) {
                latestKeys.insert(String(decoding: target, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        var sizes: [ObjectLocation: Int] = [:]
        for object in listing.objects { sizes[object.location] = object.size }
        var entries: [LsCommand.Entry] = []
        var shardsOfManifests = Set<ObjectLocation>()
        for object in listing.objects where object.location.name.hasSuffix(ShardManifest.suffix) {
            let (entry, shards) = try shardedEntry(object, store: store, sizes: sizes, latest: latestKeys.contains(object.location.key))
            entries.append(entry)
            shardsOfManifests.formUnion(shards)
        }
        for object in listing.objects {
            let name = object.location.name
            guard !name.hasPrefix("."), !name.hasSuffix(".symlink"), !name.hasSuffix(ShardManifest.suffix),
                !shardsOfManifests.contains(object.location)
            else { continue }
            var entry = LsCommand.Entry(
                name: name, bytes: object.size, complete: true, latest: latestKeys.contains(object.location.key))
            do {
                let path = object.location.description
                let file = try verify ? CheckpointFile.open(path, limits: limits) : CheckpointFile.openIndex(path, limits: limits)
                if verify { try file.verify() }
                describe(file, in: &entry)
            } catch {
                if Self.storeFailures.contains(error.code) { throw error }
                // Without --verify, a file this build cannot read from its index alone is listed, not described.
                if verify {
                    entry.complete = false
                    entry.problem = error.message
                }
            }
            entries.append(entry)
        }
        let folders = listing.commonPrefixes.map { String($0.dropFirst(prefix.key.count)) }
        return (entries.sorted { $0.name < $1.name }, folders)
    }

    /// Failures of the store itself, thrown rather than shown as a row.
    private static let storeFailures: Set<CheckpointError.Code> = [.permissionDenied, .badCredentials, .unreachable]

    /// A sharded checkpoint's row, and the objects of the shards it lists.
    private func shardedEntry(
        _ object: ObjectInfo, store: any ObjectStore, sizes: [ObjectLocation: Int], latest: Bool
    ) throws -> (LsCommand.Entry, Set<ObjectLocation>) {
        let path = object.location.description
        var entry = LsCommand.Entry(name: object.location.name, bytes: 0, complete: false, latest: latest)
        let manifest: ShardManifest
        do {
            manifest = try ShardManifest.read(path)
        } catch {
            if Self.storeFailures.contains(error.code) { throw error }
            entry.problem = error.message
            return (entry, [])
        }
        let shards = manifest.shardLocations(manifest: object.location)
        entry.bytes = manifest.shards.reduce(0) { $0 + $1.size }
        entry.epoch = manifest.epoch
        entry.batch = manifest.batch
        entry.format = "sharded x\(manifest.worldSize)"
        do throws(CheckpointError) {
            if verify {
                try manifest.verifyShards(manifestPath: path, limits: limits)
            } else {
                for (shard, location) in zip(manifest.shards, shards) {
                    // The listing has the shards beside the manifest; others are asked for.
                    var size = sizes[location]
                    if size == nil { size = try store.info(location)?.size }
                    guard size == shard.size else {
                        throw CheckpointError(
                            .notFound,
                            size == nil ? "rank \(shard.rank)'s shard is missing" : "rank \(shard.rank)'s shard is \(size ?? 0) bytes, not the \(shard.size) the manifest recorded",
                            path: location.description)
                    }
                }
            }
            entry.complete = true
        } catch {
            if Self.storeFailures.contains(error.code) { throw error }
            entry.problem = error.message
        }
        return (entry, Set(shards))
    }

    /// The registered store, or one listing `pageSize` keys per request (as `aws s3 ls --page-size`).
    private func listingStore(for prefix: ObjectLocation) throws -> any ObjectStore {
        guard let pageSize, prefix.scheme == "s3" else { return try ObjectStores.store(for: prefix) }
        var configuration = try S3Configuration.fromEnvironment()
        configuration.listPageSize = pageSize
        return try S3ObjectStore(configuration: configuration)
    }

    private func describe(_ file: CheckpointFile, in entry: inout LsCommand.Entry) {
        entry.format = file.formatName
        if let state = try? TrainingState(tree: file.tree) {
            entry.epoch = state.timestamp.epoch
            entry.batch = state.timestamp.batch
        }
    }
}
