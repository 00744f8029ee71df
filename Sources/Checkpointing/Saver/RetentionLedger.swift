import Foundation

/// The checkpoints a saver has kept, oldest first, persisted next to them so that rotation
/// keeps working after a resume (SPEC §5.2): a resumed run deletes what the previous process
/// saved, not only what it saved itself.
struct RetentionLedger: Codable, Equatable {
    /// Paths relative to the saver's folder, oldest first.
    var checkpoints: [String] = []
    var version = 1

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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do { data = try encoder.encode(self) } catch {
            throw CheckpointError(.io, "cannot encode the list of kept checkpoints", path: path)
        }
        try writeFileAtomically(Array(data), to: path)
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
