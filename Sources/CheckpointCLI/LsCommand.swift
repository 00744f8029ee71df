import ArgumentParser
import Checkpointing
import CheckpointToolSupport
import Foundation

/// `ckpt ls FOLDER|s3://bucket/prefix/ [--json]`: the checkpoints in a folder and which one the
/// latest pointer names.
struct LsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the checkpoints in a folder, with timestamp, size, format and completeness.",
        discussion: """
            A checkpoint is complete when its structure is intact (add --verify to also check \
            every tensor's checksum). Temporary files of saves in progress or killed are not listed. \
            A sharded checkpoint is one row, its manifest, complete when every shard it lists is \
            there with its recorded size (--verify: checksums too); its shards are not listed. \
            So is a Hugging Face sharded checkpoint, by its index (or by its folder, for one in a \
            subfolder), complete when the index agrees with every shard's header. \
            A PyTorch Distributed Checkpoint (DCP) folder is one row, complete when its .metadata \
            and every archive it lists are intact (--verify: every archive's CRC-32 too); one \
            without .metadata is listed as incomplete. \
            An s3:// prefix lists one level of objects (and the folders below it); each object's \
            index is read with ranged requests, a sharded checkpoint is complete when every shard \
            object is there at its recorded size, and --verify downloads each whole; --json \
            reports the bytes downloaded.
            """)

    @Argument(help: "The folder, or an s3:// prefix.")
    var folder: String

    @Option(help: "Keys per list request for s3:// prefixes (as aws s3 ls --page-size; default 1000).")
    var pageSize: Int?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Also verify every tensor's checksum (reads every file whole).")
    var verify = false

    @OptionGroup var limits: ReadingLimitsFlags

    struct Entry {
        var name: String
        var bytes: Int
        var format: String?
        var epoch: Int?
        var batch: Int?
        var complete: Bool
        var problem: String?
        var latest: Bool
    }

    func validate() throws {
        if let pageSize, !(1...1000).contains(pageSize) { throw ValidationError("--page-size must be from 1 to 1000") }
    }

    func run() throws {
        let before = ObjectStores.transfers.snapshot
        var entries: [Entry]
        var folders: [String] = []
        if ObjectLocation(folder) != nil {
            (entries, folders) = try RemoteListing(url: folder, verify: verify, pageSize: pageSize, limits: limits.readingLimits).entries()
        } else {
            entries = try listing()
        }
        if json {
            let objects: [[String: Any]] = entries.map { entry in
                [
                    "name": entry.name, "bytes": entry.bytes, "format": entry.format ?? NSNull(),
                    "epoch": entry.epoch ?? NSNull(), "batch": entry.batch ?? NSNull(),
                    "complete": entry.complete, "problem": entry.problem ?? NSNull(), "latest": entry.latest,
                ]
            }
            var object: [String: Any] = [
                "folder": folder, "checkpoints": objects, "bytes_downloaded": (ObjectStores.transfers.snapshot - before).bytesDownloaded,
            ]
            if !folders.isEmpty { object["folders"] = folders }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var rows = [["checkpoint", "epoch", "batch", "size", "format", "complete", ""]]
        for entry in entries {
            rows.append([
                entry.name, entry.epoch.map(String.init) ?? "-", entry.batch.map(String.init) ?? "-",
                Units.bytes(entry.bytes), entry.format ?? "-", entry.complete ? "yes" : "NO: \(entry.problem ?? "")",
                entry.latest ? "<- latest" : "",
            ])
        }
        for name in folders { rows.append([name, "", "", "", "", "", ""]) }
        print(Units.table(rows, rightAligned: [1, 2, 3]))
    }

    private func listing() throws -> [Entry] {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw CheckpointError(.notFound, "is not a folder", path: folder)
        }
        if (try? DistributedCheckpoint.locate(folder)) != nil {
            // The folder is itself a DCP checkpoint.
            let name = (folder as NSString).lastPathComponent
            return [checkpointEntry(name, path: folder, bytes: nil, format: "dcp", latest: false)]
        }
        let names = try manager.contentsOfDirectory(atPath: folder).sorted()
        // Every symlink (and pointer file) in the folder counts as a latest pointer.
        var latestTargets = Set<String>()
        for name in names where !name.hasPrefix(".") {
            let path = folder + "/" + name
            if let target = try? manager.destinationOfSymbolicLink(atPath: path) {
                latestTargets.insert((target as NSString).lastPathComponent)
            } else if name.hasSuffix(".pointer"), let data = manager.contents(atPath: path) {
                let target = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                latestTargets.insert((target as NSString).lastPathComponent)
            }
        }
        var entries: [Entry] = []
        var shardsOfManifests = Set<String>()
        for name in names where name.hasSuffix(ShardManifest.suffix) {
            let (entry, shards) = shardedEntry(name, latest: latestTargets.contains(name))
            entries.append(entry)
            shardsOfManifests.formUnion(shards)
        }
        for name in names where !name.hasPrefix(".") {
            let path = folder + "/" + name
            let isIndex = name.hasSuffix(HuggingFaceSharded.indexSuffix)
            guard isIndex || Self.holdsHuggingFaceIndex(path) else { continue }
            let (entry, shards) = huggingFaceEntry(isIndex ? name : name + "/", path: path, latest: latestTargets.contains(name))
            entries.append(entry)
            shardsOfManifests.formUnion(shards)
        }
        for name in names where !name.hasPrefix(".") && !name.hasSuffix(".pointer") && !name.hasSuffix(ShardManifest.suffix)
            && !name.hasSuffix(HuggingFaceSharded.indexSuffix)
        {
            let path = folder + "/" + name
            guard !shardsOfManifests.contains(Self.standardized(path)) else { continue }
            guard (try? manager.destinationOfSymbolicLink(atPath: path)) == nil,
                manager.fileExists(atPath: path, isDirectory: &isFolder)
            else { continue }
            if isFolder.boolValue {
                let located = Result { () throws(CheckpointError) in try DistributedCheckpoint.locate(path) }
                if case .success(nil) = located { continue }
                entries.append(checkpointEntry(name, path: path, bytes: nil, format: "dcp", latest: latestTargets.contains(name)))
                continue
            }
            let bytes = (try? manager.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            entries.append(checkpointEntry(name, path: path, bytes: bytes, format: nil, latest: latestTargets.contains(name)))
        }
        return entries.sorted { $0.name < $1.name }
    }

    private static func standardized(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    /// A checkpoint file's or DCP folder's row: complete when it opens (a DCP folder's every
    /// archive read in place), and with `--verify` when its checksums match. `bytes` `nil`: the
    /// checkpoint's own count (a DCP folder's data files); `format` `nil`: the file's.
    private func checkpointEntry(_ name: String, path: String, bytes: Int?, format: String?, latest: Bool) -> Entry {
        var entry = Entry(name: name, bytes: bytes ?? 0, format: format, complete: false, latest: latest)
        do throws(CheckpointError) {
            let file = try CheckpointFile.open(path, limits: limits.readingLimits)
            entry.bytes = bytes ?? file.byteCount
            entry.format = format ?? file.formatName
            if let state = try? TrainingState(tree: file.tree) {
                entry.epoch = state.timestamp.epoch
                entry.batch = state.timestamp.batch
            }
            if verify { try file.verify() }
            entry.complete = true
        } catch {
            entry.problem = error.message
        }
        return entry
    }

    /// Whether `path` is a folder (not a symlink) that holds a Hugging Face index.
    private static func holdsHuggingFaceIndex(_ path: String) -> Bool {
        guard (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == nil,
            let names = try? FileManager.default.contentsOfDirectory(atPath: path)
        else { return false }
        return names.contains { $0.hasSuffix(HuggingFaceSharded.indexSuffix) && !$0.hasPrefix(".") }
    }

    /// A Hugging Face checkpoint's row (its index, or its folder), and the (standardized) paths
    /// of the shards it lists, which are then not listed on their own.
    private func huggingFaceEntry(_ name: String, path: String, latest: Bool) -> (Entry, Set<String>) {
        var entry = Entry(name: name, bytes: 0, complete: false, latest: latest)
        do throws(CheckpointError) {
            let file = try CheckpointFile.open(path, limits: limits.readingLimits)
            entry.bytes = file.byteCount
            entry.format = "\(file.formatName) x\(file.huggingFaceShards?.shards.count ?? 0)"
            let shards = file.huggingFaceShards.map { hf in Set(hf.shards.map { Self.standardized(hf.path(of: $0)) }) } ?? []
            do throws(CheckpointError) {
                if verify { try file.verify() }
                entry.complete = true
            } catch {
                entry.problem = error.message
            }
            return (entry, shards)
        } catch {
            entry.problem = error.message
            return (entry, [])
        }
    }

    /// A sharded checkpoint's row, and the (standardized) paths of the shards it lists.
    private func shardedEntry(_ name: String, latest: Bool) -> (Entry, Set<String>) {
        let path = folder + "/" + name
        var entry = Entry(name: name, bytes: 0, complete: false, latest: latest)
        do throws(CheckpointError) {
            let manifest = try ShardManifest.read(path)
            let shards = manifest.shards.map { manifest.shardPath(rank: $0.rank, manifestPath: path) }
            entry.bytes = manifest.shards.reduce(0) { $0 + $1.size }
            entry.epoch = manifest.epoch
            entry.batch = manifest.batch
            entry.format = "sharded x\(manifest.worldSize)"
            do throws(CheckpointError) {
                if verify {
                    try manifest.verifyShards(manifestPath: path, limits: limits.readingLimits)
                } else {
                    for (shard, shardPath) in zip(manifest.shards, shards) {
                        let size = (try? FileManager.default.attributesOfItem(atPath: shardPath)[.size] as? Int) ?? nil
                        guard size == shard.size else {
                            throw CheckpointError(
                                .notFound, size == nil ? "rank \(shard.rank)'s shard is missing" : "rank \(shard.rank)'s shard has the wrong size",
                                path: shardPath)
                        }
                    }
                }
                entry.complete = true
            } catch {
                entry.problem = error.message
            }
            return (entry, Set(shards.map(Self.standardized)))
        } catch {
            entry.problem = error.message
            return (entry, [])
        }
    }
}
