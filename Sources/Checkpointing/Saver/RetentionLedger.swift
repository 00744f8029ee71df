import Foundation

/// The checkpoints a saver has kept, oldest first, persisted next to them so that rotation
/// keeps working after a resume: a resumed run deletes what the previous process saved, not
/// only what it saved itself.
///
/// A process killed between committing a checkpoint and recording it here leaves a checkpoint
/// the list lacks; ``reconcile(adopting:keep:protected:mayPrune:position:)`` takes it back in
/// when the next run starts (see `CheckpointSaver`'s reconciliation).
struct RetentionLedger: Codable, Equatable {
    /// Paths relative to the saver's folder, oldest first.
    var checkpoints: [String] = []
    var version = 1
    /// Where in training each checkpoint was saved, so that checkpoints taken back in can be
    /// put in order without opening the ones listed. Optional: lists written before it was
    /// recorded lack it, and older readers ignore it.
    var positions: [String: CheckpointPosition]?

    /// The ledger's file in `folder` for `rank`.
    static func path(folder: String, rank: Int) -> String {
        FilePaths.join(folder, ".checkpoints-rank\(rank).json")
    }

    /// Reads the ledger; a missing one is empty, a damaged one is an error naming it.
    static func load(from path: String) throws(CheckpointError) -> RetentionLedger {
        let bytes: [UInt8]
        do {
            bytes = try SystemCalls.readFile(path, limit: 64 << 20)
        } catch where error.code == .notFound {
            return RetentionLedger()
        }
        do {
            return try JSONDecoder().decode(RetentionLedger.self, from: Data(bytes))
        } catch {
            throw CheckpointError(
                .malformed, "the saver's list of kept checkpoints is damaged; delete it to start a new list", path: path)
        }
    }

    /// Replaces the ledger file atomically.
    func save(to path: String) throws(CheckpointError) {
        try writeFileAtomically(encoded(path: path), to: path)
    }

    /// The ledger as the JSON stored (`path` names it in errors).
    func encoded(path: String) throws(CheckpointError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { return Array(try encoder.encode(self)) } catch {
            throw CheckpointError(.io, "cannot encode the list of kept checkpoints", path: path)
        }
    }

    /// Records a committed checkpoint as the newest and returns the oldest ones beyond `keep`
    /// (-1 keeps all), removed from the list.
    mutating func record(_ relative: String, at position: CheckpointPosition, keep: Int) -> [String] {
        checkpoints.removeAll { $0 == relative }
        checkpoints.append(relative)
        positions = (positions ?? [:]).merging([relative: position]) { $1 }
        var removed: [String] = []
        if keep >= 0 {
            while checkpoints.count > keep { removed.append(checkpoints.removeFirst()) }
        }
        forgetPositions(of: removed)
        return removed
    }

    /// Drops entries `exists` says are gone (deleted by hand, or pruned by a process killed
    /// before it rewrote the list).
    mutating func forgetMissing(_ exists: (String) -> Bool) {
        let missing = checkpoints.filter { !exists($0) }
        checkpoints.removeAll { missing.contains($0) }
        forgetPositions(of: missing)
    }

    /// Takes back checkpoints the list lacks and prunes to `keep`.
    ///
    /// - Parameters:
    ///   - adopted: committed checkpoints of this run missing from the list, with where they
    ///     were saved. When there are any, the whole list is put in training order (entries
    ///     without a known position first), as a kill can lose the newest checkpoint (committed,
    ///     not yet recorded) or an old one (dropped from the list, not yet deleted).
    ///   - keep: -1 keeps all; else the newest `keep`: the older entries are pruned, except
    ///     those `protected` or that `mayPrune` refuses, which stay over the count.
    ///   - protected: never pruned (the checkpoint being resumed from).
    ///   - mayPrune: whether an entry may be deleted now (a local copy not yet safe in the
    ///     remote folder is kept until a later save's rotation).
    ///   - position: the position of a listed entry the list has none for; asked only when
    ///     something is adopted.
    /// - Returns: The pruned entries, oldest first, removed from the list.
    mutating func reconcile(
        adopting adopted: [String: CheckpointPosition], keep: Int, protected: Set<String>,
        mayPrune: (String) -> Bool, position: (String) -> CheckpointPosition?
    ) -> [String] {
        if !adopted.isEmpty {
            var known = positions ?? [:]
            known.merge(adopted) { $1 }
            for entry in checkpoints where known[entry] == nil {
                known[entry] = position(entry)
            }
            let entries = checkpoints.filter { adopted[$0] == nil } + adopted.keys.sorted()
            checkpoints = entries.enumerated().sorted { left, right in
                switch (known[left.element], known[right.element]) {
                case (nil, nil): return left.offset < right.offset
                case (nil, _): return true
                case (_, nil): return false
                case (let a?, let b?): return a == b ? left.offset < right.offset : a < b
                }
            }.map(\.element)
            positions = known.filter { checkpoints.contains($0.key) }
        }
        // Only the oldest beyond `keep` go: what is skipped among them stays over the count
        // until a later save's rotation, rather than a newer checkpoint going in its place.
        guard keep >= 0, checkpoints.count > keep else { return [] }
        let pruned = checkpoints.prefix(checkpoints.count - keep).filter { !protected.contains($0) && mayPrune($0) }
        checkpoints.removeAll { pruned.contains($0) }
        forgetPositions(of: pruned)
        return pruned
    }

    private mutating func forgetPositions(of entries: [String]) {
        guard positions != nil else { return }
        for entry in entries { positions?[entry] = nil }
    }
}

/// Where in training a checkpoint was saved, ordered as training goes: by batch, then epoch
/// (an epoch's end follows its last batch), samples and tokens.
struct CheckpointPosition: Codable, Hashable, Comparable, Sendable {
    var epoch: Int
    var batch: Int
    var sample = 0
    var token = 0

    init(epoch: Int, batch: Int, sample: Int = 0, token: Int = 0) {
        (self.epoch, self.batch, self.sample, self.token) = (epoch, batch, sample, token)
    }

    init(_ timestamp: Timestamp) {
        self.init(epoch: timestamp.epoch, batch: timestamp.batch, sample: timestamp.sample, token: timestamp.token)
    }

    static func < (a: Self, b: Self) -> Bool {
        (a.batch, a.epoch, a.sample, a.token) < (b.batch, b.epoch, b.sample, b.token)
    }
}

/// Writes a small file atomically and durably.
func writeFileAtomically(_ bytes: [UInt8], to path: String) throws(CheckpointError) {
    let file = try AtomicFileWriter(path: path)
    do {
        try file.write(bytes)
        try file.commit()
    } catch {
        file.abort()
        throw error
    }
}
