import Foundation
import Logging
import Synchronization

/// A saver's copies in an object store: each checkpoint is uploaded after its
/// local commit; then the latest pointer, a `NAME.symlink` object holding the checkpoint's key
/// (as Composer writes it), moves to it, but only once the store confirms the checkpoint is
/// there in full; then the remote list of kept checkpoints is updated and the oldest pruned.
///
/// The list lives in the store (`.checkpoints-rankN.json` beside the checkpoints), so a run
/// resumed on another machine keeps pruning what the first one uploaded, and autoresume can
/// find the newest checkpoint there when the local folder is empty.
final class RemoteCheckpoints: Sendable {
    let folder: ObjectLocation
    /// Checkpoints kept remotely: -1 all, N the newest N.
    let keep: Int
    /// The latest pointer's name inside the folder, without `.symlink`; `nil` for none.
    let latestName: String?
    let rank: Int
    /// The remote list, once read.
    private let ledger = Mutex<RetentionLedger?>(nil)

    static let symlinkSuffix = ".symlink"

    init(folder: ObjectLocation, keep: Int, latestName: String?, rank: Int) {
        self.folder = folder
        self.keep = keep
        self.latestName = latestName
        self.rank = rank
    }

    var ledgerLocation: ObjectLocation { folder.appending(".checkpoints-rank\(rank).json") }
    var pointerLocation: ObjectLocation? { latestName.map { folder.appending($0 + Self.symlinkSuffix) } }

    /// Uploads a committed local checkpoint as `relative` in the folder, then moves the pointer,
    /// records it and prunes. A failure leaves the pointer on the previous checkpoint.
    func didSave(localPath: String, relative: String, position: CheckpointPosition) throws(CheckpointError) {
        let store = try ObjectStores.store(for: folder)
        let target = folder.appending(relative)
        let uploaded = try store.upload(file: localPath, to: target)
        guard let seen = try store.info(target), seen.size == uploaded.size else {
            throw CheckpointError(
                .objectStore,
                "the store does not show the checkpoint just uploaded in full, so the latest pointer still names the previous one",
                path: target.description)
        }
        if let pointerLocation {
            try store.write(Array(target.key.utf8), to: pointerLocation)
        }
        var list = try currentLedger(store)
        let pruned = list.record(relative, at: position, keep: keep)
        try store.write(try Self.encode(list, at: ledgerLocation), to: ledgerLocation)
        ledger.withLock { $0 = list }
        // Deleted after the list no longer names them: a crash here leaves an object too many.
        for old in pruned {
            do {
                try store.delete(folder.appending(old))
            } catch {
                logger.warning("could not delete the pruned remote checkpoint \(folder.appending(old)): \(error)")
            }
        }
    }

    /// Reconciles the remote list with the folder's objects when a run starts, as the saver does
    /// locally: objects the file name template could have made (`matches`) whose header names
    /// this run and that the list lacks (a kill between an upload and the list's update) are
    /// adopted, the list is put in training order and pruned to ``keep`` (never
    /// `resumedFrom`), and the pointer moved to the newest kept checkpoint if a kill left it
    /// behind.
    ///
    /// - Parameter identity: reads an object's identity, given its path relative to the
    ///   folder and its size (from the local copy when it has that size, else by download).
    /// - Returns: Every object in the folder after pruning, by relative path, with its size.
    func reconcile(
        runName: String, matches: (String) -> Bool, resumedFrom: ObjectLocation?,
        identity: (String, Int) -> CheckpointIdentity?
    ) throws(CheckpointError) -> [String: Int] {
        let store = try ObjectStores.store(for: folder)
        let prefix = folder.appending("")
        var copies: [String: Int] = [:]
        for object in try store.list(prefix, delimiter: nil).objects where object.location.key.hasPrefix(prefix.key) {
            copies[String(object.location.key.dropFirst(prefix.key.count))] = object.size
        }
        var list = try currentLedger(store)
        let before = list
        list.forgetMissing { copies[$0] != nil }
        var adopted: [String: CheckpointPosition] = [:]
        for (relative, size) in copies where !list.checkpoints.contains(relative) && matches(relative) {
            guard !relative.split(separator: "/").contains(where: { $0.hasPrefix(".") }),
                let found = identity(relative, size), found.runName == runName, let position = found.position
            else { continue }
            adopted[relative] = position
        }
        var protected: Set<String> = []
        if let resumedFrom, resumedFrom.bucket == folder.bucket, resumedFrom.key.hasPrefix(prefix.key) {
            protected.insert(String(resumedFrom.key.dropFirst(prefix.key.count)))
        }
        let pruned = list.reconcile(
            adopting: adopted, keep: keep, protected: protected, mayPrune: { _ in true },
            position: { relative in copies[relative].flatMap { identity(relative, $0)?.position } })
        if list != before { try store.write(try Self.encode(list, at: ledgerLocation), to: ledgerLocation) }
        ledger.withLock { $0 = list }
        for old in pruned {
            try store.delete(folder.appending(old))
            copies[old] = nil
        }
        if let pointerLocation, let newest = list.checkpoints.last {
            let key = folder.appending(newest).key
            let current = try? store.read(pointerLocation, range: nil)
            if current.map({ String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }) != key {
                try store.write(Array(key.utf8), to: pointerLocation)
            }
        }
        if !adopted.isEmpty || !pruned.isEmpty {
            logger.notice("retention: adopted \(adopted.keys.sorted()), pruned \(pruned) in \(folder)")
        }
        return copies
    }

    /// The remote checkpoints to resume from, best first: the pointer's target, then the kept
    /// list newest first.
    func resumeCandidates() throws(CheckpointError) -> [String] {
        let store = try ObjectStores.store(for: folder)
        var candidates: [String] = []
        if let pointerLocation, let target = try? store.read(pointerLocation, range: nil) {
            let key = String(decoding: target, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !key.isEmpty {
                candidates.append(ObjectLocation(scheme: folder.scheme, bucket: folder.bucket, key: key).description)
            }
        }
        for relative in try currentLedger(store).checkpoints.reversed() {
            let url = folder.appending(relative).description
            if !candidates.contains(url) { candidates.append(url) }
        }
        return candidates
    }

    private func currentLedger(_ store: any ObjectStore) throws(CheckpointError) -> RetentionLedger {
        if let cached = ledger.withLock({ $0 }) { return cached }
        let loaded: RetentionLedger
        do throws(CheckpointError) {
            let bytes = try store.read(ledgerLocation, range: nil)
            guard let decoded = try? JSONDecoder().decode(RetentionLedger.self, from: Data(bytes)) else {
                throw CheckpointError(
                    .malformed, "the saver's remote list of kept checkpoints is damaged; delete it to start a new list",
                    path: ledgerLocation.description)
            }
            loaded = decoded
        } catch where error.code == .notFound {
            loaded = RetentionLedger()
        }
        ledger.withLock { $0 = loaded }
        return loaded
    }

    private static func encode(_ ledger: RetentionLedger, at location: ObjectLocation) throws(CheckpointError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(ledger))
        } catch {
            throw CheckpointError(.io, "cannot encode the list of kept checkpoints", path: location.description)
        }
    }
}
