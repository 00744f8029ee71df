/// What a PyTorch Distributed Checkpoint's `.metadata` says, read from its pickle and checked:
/// every entry of the saved state dict by its FQN (DCP's dotted name), where its bytes are,
/// and the key path it was flattened from.
///
/// Checked when read: every dtype is one this library has, every tensor's chunks tile it
/// exactly (each inside it, no overlap, no gap), every chunk and value has a storage location
/// in a data file of the folder (a plain file name, never a path), and no two locations share
/// a byte. Locations are checked against the data files' sizes when the folder is opened
/// (``DistributedCheckpoint``).
struct DCPMetadata: Sendable {
    /// Where an item's `torch.save` archive is: a data file of the folder, and the byte range.
    struct Location: Hashable, Sendable {
        var file: String
        var offset: Int
        var length: Int

        var range: Range<Int> { offset..<(offset + length) }
    }

    /// One box of a tensor and where its archive is.
    struct Chunk: Sendable, Equatable {
        var box: TensorSlice
        var location: Location
    }

    /// A saved tensor: its dtype, global shape and chunks.
    struct TensorItem: Sendable, Equatable {
        var dtype: DType
        var shape: [Int]
        var chunks: [Chunk]
    }

    /// An entry of the state dict.
    enum Item: Sendable, Equatable {
        case tensor(TensorItem)
        /// A value that is not a tensor, pickled on its own (`BytesStorageMetadata`).
        case value(Location)
    }

    /// Every FQN, in the order the metadata lists them.
    var fqns: [String]
    var items: [String: Item]
    /// The key path each FQN was flattened from (`planner_data` of DCP's default planner);
    /// `nil` when the checkpoint has none (saved without flattening, or by another planner).
    var keyPaths: [String: [DCPKey]]?
    /// The save's id (`storage_meta.save_id`), when recorded.
    var saveID: String?
    /// How many list slots that no entry fills (`None` in torch) rebuilding the tree may create:
    /// a key path's list index is not bounded by the pickle's size, this is.
    var listSlotLimit = 1 << 20

    /// Every location, in metadata order: each value's, then each tensor's chunks.
    var locations: [Location] {
        fqns.flatMap { fqn -> [Location] in
            switch items[fqn] {
            case .tensor(let tensor): tensor.chunks.map(\.location)
            case .value(let location): [location]
            case nil: []
            }
        }
    }

    /// The data files the metadata refers to, sorted.
    var files: [String] { Set(locations.map(\.file)).sorted() }

    /// Whether `name` can be a data file of the folder: a plain name, not a path. DCP writes
    /// `__<rank>_<n>.distcp`; other storage writers use other plain names.
    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\\") && !name.utf8.contains(0)
    }

    /// Checks that no two locations in one file share a byte.
    func checkDisjointLocations() throws(CheckpointError) {
        var byFile: [String: [(range: Range<Int>, fqn: String)]] = [:]
        for fqn in fqns {
            switch items[fqn] {
            case .tensor(let tensor):
                for chunk in tensor.chunks { byFile[chunk.location.file, default: []].append((chunk.location.range, fqn)) }
            case .value(let location):
                byFile[location.file, default: []].append((location.range, fqn))
            case nil: break
            }
        }
        for (file, ranges) in byFile {
            let sorted = ranges.sorted { $0.range.lowerBound < $1.range.lowerBound }
            for (previous, next) in zip(sorted, sorted.dropFirst()) where next.range.lowerBound < previous.range.upperBound {
                throw CheckpointError(
                    .malformed,
                    "the .metadata places \"\(previous.fqn)\" (bytes \(previous.range.lowerBound)..<\(previous.range.upperBound)) and \"\(next.fqn)\" (bytes \(next.range.lowerBound)..<\(next.range.upperBound)) on the same bytes of \(file)")
            }
        }
    }
}

/// One key of the path an FQN was flattened from: a dict key (DCP keeps every dict key as its
/// string, `str(key)`) or a list index.
enum DCPKey: Hashable, Sendable, CustomStringConvertible {
    case name(String)
    case index(Int)

    var description: String {
        switch self {
        case .name(let name): name
        case .index(let index): String(index)
        }
    }

    /// The FQN of a path, as DCP's default planner makes it: the keys joined by dots.
    static func fqn(_ path: [DCPKey]) -> String { path.map(\.description).joined(separator: ".") }
}
