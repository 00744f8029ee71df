import Checkpointing
import CheckpointingS3
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `ckpt ls s3://bucket/prefix/`: the checkpoints one level below a prefix, as `ckpt ls` shows a
/// folder, plus the "folders" below it.
///
/// Objects appear whole or not at all, so every listed object is complete as uploaded. Each
/// one's format, epoch and batch come from its header alone: its first and last bytes (and a
/// native file's whole header) are fetched into a sparse staging file of the object's size,
/// which is opened like a checkpoint and removed. `--verify` downloads and verifies each whole.
struct RemoteListing {
    var url: String
    var verify: Bool
    var pageSize: Int?

    /// The bytes fetched from each end of an object to read its header.
    static let probeBytes = 64 << 10

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
        var entries: [LsCommand.Entry] = []
        for object in listing.objects {
            let name = object.location.name
            guard !name.hasPrefix("."), !name.hasSuffix(".symlink") else { continue }
            var entry = LsCommand.Entry(
                name: name, bytes: object.size, complete: true, latest: latestKeys.contains(object.location.key))
            do {
                if verify {
                    let file = try CheckpointFile.open(object.location.description)
                    try file.verify()
                    describe(file, in: &entry)
                } else {
                    try probe(object, store: store, into: &entry)
                }
            } catch let error as CheckpointError where verify {
                entry.complete = false
                entry.problem = error.message
            } catch let error as CheckpointError where [.permissionDenied, .badCredentials, .unreachable].contains(error.code) {
                throw error
            } catch {
                // Not a checkpoint this build reads from its header alone: listed, not described.
            }
            entries.append(entry)
        }
        let folders = listing.commonPrefixes.map { String($0.dropFirst(prefix.key.count)) }
        return (entries, folders)
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

    /// Reads the object's header through a sparse staging file that holds only its ends.
    private func probe(_ object: ObjectInfo, store: any ObjectStore, into entry: inout LsCommand.Entry) throws {
        let size = object.size
        var head = try store.read(object.location, range: 0..<min(size, Self.probeBytes))
        if head.count >= 8 {
            // A safetensors header may be longer than the probe: fetch the rest of it.
            let length = head.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
            if length <= 100_000_000, 8 + Int(length) <= size, 8 + Int(length) > head.count {
                head += try store.read(object.location, range: head.count..<(8 + Int(length)))
            }
        }
        let tailStart = max(head.count, size - Self.probeBytes)
        let tail = tailStart < size ? try store.read(object.location, range: tailStart..<size) : []

        let path = ObjectStores.stagingFolder + "/.\(object.location.name).probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = try SystemCalls.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600, operation: "creating a probe file")
        defer { SystemCalls.discard(path) }
        do {
            defer { SystemCalls.release(fd, path: path) }
            try SystemCalls.truncate(fd, to: size, path: path)
            try head.withUnsafeBytes { try SystemCalls.writeAll(fd, $0, at: 0, path: path) }
            try tail.withUnsafeBytes { try SystemCalls.writeAll(fd, $0, at: tailStart, path: path) }
        }
        describe(try CheckpointFile.open(path), in: &entry)
    }
}
