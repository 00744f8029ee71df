import Foundation

/// Opening a Hugging Face sharded checkpoint as one ``CheckpointFile``: the index is read, every
/// shard it names is memory-mapped and its header checked, and the `weight_map` is held against
/// the headers. Tensor bytes are not read: they stay in the shards' mappings until used.
enum HuggingFaceReader {
    /// The index that `path` names: `path` itself when it ends in `.safetensors.index.json`,
    /// or the only such file in the folder `path`; `nil` when `path` names no Hugging Face
    /// sharded checkpoint.
    ///
    /// - Throws: ``CheckpointError``: `.invalidArgument` for a folder that holds several
    ///   indexes; `.unsupportedFormat` for an index in object storage.
    static func locateIndex(_ path: String) throws(CheckpointError) -> String? {
        if path.hasSuffix(HuggingFaceSharded.indexSuffix) {
            guard case .local = StoragePath(path) else {
                throw CheckpointError(
                    .unsupportedFormat,
                    "is a Hugging Face sharded checkpoint in object storage, which this build does not read; download its folder and open it there",
                    path: path)
            }
            return path
        }
        var isFolder: ObjCBool = false
        guard case .local(let local) = StoragePath(path),
            FileManager.default.fileExists(atPath: local, isDirectory: &isFolder), isFolder.boolValue
        else { return nil }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: local)) ?? [])
            .filter { $0.hasSuffix(HuggingFaceSharded.indexSuffix) && !$0.hasPrefix(".") }.sorted()
        switch names.count {
        case 0:
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: local)) ?? []
            let shards = contents.filter { !$0.hasPrefix(".") && HuggingFaceSharded.shardPrefix(of: $0) != nil }.sorted()
            guard shards.isEmpty else {
                throw CheckpointError(
                    .notFound,
                    "holds Hugging Face shards (\(shards.prefix(3).joined(separator: ", "))\(shards.count > 3 ? ", ..." : "")) but no index (*\(HuggingFaceSharded.indexSuffix)): a save that did not finish or an incomplete copy, so no checkpoint is committed in it",
                    path: path)
            }
            return nil
        case 1: return FilePaths.join(local, names[0])
        default:
            throw CheckpointError(
                .invalidArgument,
                "holds \(names.count) Hugging Face indexes (\(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", ..." : "")); name the index of the checkpoint to use",
                path: path)
        }
    }

    /// Opens the checkpoint whose index is at `indexPath`.
    ///
    /// - Throws: ``CheckpointError``: `.notFound` for a missing index or shard; `.malformed` for
    ///   a damaged index or shard, or a `weight_map` that disagrees with the shards' headers (a
    ///   tensor missing, listed twice, held by two shards or by another shard than the map
    ///   names); `.checksumMismatch` when the index's commit record names another shard than
    ///   the one on disk.
    static func open(indexAt indexPath: String) throws(CheckpointError) -> CheckpointFile {
        let indexFile = try MappedFile(path: indexPath)
        let index: HuggingFaceIndex
        do {
            index = try HuggingFaceIndex(parsing: indexFile.bytes)
        } catch {
            throw error.at(path: indexPath)
        }
        let folder = FilePaths.split(indexPath).folder
        let names = index.shardNames.sorted()

        var contents: [FormatContents] = []
        var sizes: [Int] = []
        var location: [String: Int] = [:]
        for (position, name) in names.enumerated() {
            let shardPath = FilePaths.join(folder, name)
            let file: MappedFile
            do {
                file = try MappedFile(path: shardPath)
            } catch where error.code == .notFound {
                let tensors = index.weightMap.filter { $0.shard == name }
                throw CheckpointError(
                    .notFound,
                    "shard \"\(name)\" is missing; the index \(indexPath) maps \(tensors.count) tensor\(tensors.count == 1 ? "" : "s") to it (\"\(tensors.first?.tensor ?? "")\"\(tensors.count > 1 ? ", ..." : "")); the download or copy of the folder is incomplete",
                    path: shardPath)
            }
            let shard = try NativeFormat.read(file)
            guard !shard.isNative else {
                throw CheckpointError(
                    .malformed,
                    "is a swift-checkpointing native checkpoint, not a Hugging Face shard of plain named tensors; the index \(indexPath) cannot list it",
                    path: shardPath)
            }
            for (key, _) in shard.tree.dictValue ?? [:] {
                if let other = location.updateValue(position, forKey: key.description) {
                    throw CheckpointError(
                        .malformed,
                        "tensor \"\(key.description)\" is in two shards, \"\(names[other])\" and \"\(name)\"; which one holds it is ambiguous, so the folder mixes shards of different saves",
                        path: indexPath)
                }
            }
            contents.append(shard)
            sizes.append(file.bytes.count)
        }

        var byShard = Array(repeating: [String](), count: names.count)
        for (tensor, shard) in index.weightMap {
            guard let position = location[tensor] else {
                throw CheckpointError(
                    .malformed,
                    "tensor \"\(tensor)\" is in the weight_map (in shard \"\(shard)\") but in no shard; the shard is not the one the index was written with",
                    path: indexPath)
            }
            guard names[position] == shard else {
                throw CheckpointError(
                    .malformed,
                    "the weight_map puts tensor \"\(tensor)\" in shard \"\(shard)\" but it is in \"\(names[position])\"; the index does not belong to these shards",
                    path: indexPath)
            }
            byShard[position].append(tensor)
        }
        // In shard order, which follows the order the tensors were saved in (transformers lists
        // the weight_map alphabetically), and within a shard in the weight_map's order.
        var tree = StateDict()
        for (position, tensors) in byShard.enumerated() {
            let shard = contents[position].tree.dictValue ?? [:]
            for tensor in tensors { tree[.string(tensor)] = shard[.string(tensor)] }
        }
        if tree.count != location.count,
            let (extra, position) = location.first(where: { tree[.string($0.key)] == nil })
        {
            throw CheckpointError(
                .malformed,
                "shard \"\(names[position])\" holds tensor \"\(extra)\", which the weight_map does not list; the index does not belong to these shards",
                path: indexPath)
        }

        let withChecksums = contents.filter { !$0.checksums.isEmpty }.count
        if index.record != nil || (withChecksums > 0 && withChecksums < contents.count) {
            try checkCommit(index, indexPath: indexPath, names: names, contents: contents, sizes: sizes)
        }
        var checksums: [String: UInt64] = [:]
        for shard in contents { checksums.merge(shard.checksums) { first, _ in first } }

        let shards = zip(names.indices, names).map { position, name in
            HuggingFaceShards.Shard(
                name: name, byteCount: sizes[position], tensorCount: contents[position].tree.dictValue?.count ?? 0,
                headerDigest: TensorChecksum.hex(contents[position].integrityDigest),
                hasChecksums: !contents[position].checksums.isEmpty)
        }
        var file = CheckpointFile(
            path: indexPath, kind: .safetensors, isNative: false, tree: .dict(tree), metadata: [:],
            byteCount: indexFile.bytes.count + sizes.reduce(0, +), checksums: checksums,
            integrityDigest: TensorChecksum.of(indexFile.bytes))
        file.huggingFaceShards = HuggingFaceShards(
            indexPath: indexPath, shards: shards,
            shardOfTensor: Dictionary(uniqueKeysWithValues: location.map { (StatePath.escape($0.key), $0.value) }),
            statedTotalSize: index.totalSize,
            isCommitRecorded: index.record != nil)
        return file
    }

    /// Checks the shards against the index's commit record: the same set of shards, each of the
    /// size and header digest recorded (a header this library wrote holds every tensor's
    /// checksum, so the digest also says the checksums are there). Without a record, shards of which
    /// only some carry checksums are refused: they come from different saves.
    private static func checkCommit(
        _ index: HuggingFaceIndex, indexPath: String, names: [String], contents: [FormatContents], sizes: [Int]
    ) throws(CheckpointError) {
        guard let record = index.record else {
            let unchecked = zip(names, contents).filter { $0.1.checksums.isEmpty }.map(\.0)
            throw CheckpointError(
                .malformed,
                "some shards record checksums and others (\(unchecked.prefix(3).joined(separator: ", "))\(unchecked.count > 3 ? ", ..." : "")) do not, so the folder mixes shards of different saves; write the checkpoint again from its source",
                path: indexPath)
        }
        let recorded = Set(record.shards.map(\.name))
        guard recorded == Set(names) else {
            let difference = recorded.symmetricDifference(names).sorted()
            throw CheckpointError(
                .malformed,
                "the commit record and the weight_map name different shards (\(difference.prefix(3).joined(separator: ", "))); the index is damaged",
                path: indexPath)
        }
        for entry in record.shards {
            guard let position = names.firstIndex(of: entry.name) else { continue }
            let shardPath = FilePaths.join(FilePaths.split(indexPath).folder, entry.name)
            let digest = contents[position].integrityDigest
            guard sizes[position] == entry.byteCount, digest == entry.headerDigest else {
                let found = sizes[position] == entry.byteCount ? "header digest \(TensorChecksum.hex(digest))" : "\(sizes[position]) bytes"
                let expected =
                    sizes[position] == entry.byteCount ? "header digest \(TensorChecksum.hex(entry.headerDigest))" : "\(entry.byteCount)"
                throw CheckpointError(
                    .checksumMismatch,
                    "is not the shard the index \(indexPath) committed (\(found), the index recorded \(expected)): it was changed or replaced after the checkpoint was saved",
                    path: shardPath)
            }
        }
    }
}
