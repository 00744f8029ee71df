import Logging

/// Writing a Hugging Face sharded checkpoint: the shards, each atomically and durably, then the
/// index, last and atomically, so that the checkpoint exists exactly when its index does.
enum HuggingFaceWriter {
    /// Where a save to `path` goes: `path` itself when it ends in `.safetensors.index.json`
    /// (whose name before that suffix is the shards' prefix), else the folder `path` with
    /// `model.safetensors.index.json` in it.
    static func destination(_ path: String) throws(CheckpointError) -> (index: String, folder: String, prefix: String) {
        guard case .local(let local) = StoragePath(path) else {
            throw CheckpointError(
                .unsupportedFormat,
                "Hugging Face sharded checkpoints are saved to local folders only in this build; save locally and upload the folder",
                path: path)
        }
        if local.hasSuffix(HuggingFaceSharded.indexSuffix) {
            // Not empty: a save's file name is never only an extension (FilenameTemplate).
            let (folder, name) = FilePaths.split(local)
            return (local, folder, String(name.dropLast(HuggingFaceSharded.indexSuffix.count)))
        }
        var folder = local
        while folder.count > 1, folder.hasSuffix("/") { folder.removeLast() }
        return (FilePaths.join(folder, HuggingFaceSharded.indexName), folder, HuggingFaceSharded.defaultPrefix)
    }

    /// The tensors a Hugging Face checkpoint of `tree` holds, in the tree's order, named as
    /// Hugging Face names them (the keys from the model's root joined with dots):
    /// `state/model`'s tensors for a tree in Composer's layout (the rest of a training state has
    /// no place in a Hugging Face checkpoint), else every tensor of the tree.
    ///
    /// - Throws: ``CheckpointError`` (`.invalidState`) for a value that is not a tensor where a
    ///   model's tensors are expected, two tensors that would get one name, or no tensor at all.
    static func tensors(of tree: StateValue) throws(CheckpointError) -> [(name: String, tensor: Tensor)] {
        var root = tree
        var rootPath: String?
        if let state = tree.dictValue?["state"]?.dictValue {
            guard let model = state["model"], model.dictValue != nil else {
                throw CheckpointError(
                    .invalidState,
                    "the checkpoint is a training state without a state/model dict, so it holds no model to save as a Hugging Face checkpoint")
            }
            root = model
            rootPath = "state/model"
        }
        var tensors: [(name: String, tensor: Tensor)] = []
        var names = Set<String>()
        func walk(_ value: StateValue, name: String?, path: String?) throws(CheckpointError) {
            func child(_ component: String, _ value: StateValue) throws(CheckpointError) {
                try walk(
                    value, name: name.map { $0 + "." + component } ?? component,
                    path: StatePath.join(path, StatePath.escape(component)))
            }
            switch value {
            case .tensor(let tensor):
                let name = name ?? ""
                guard name != "__metadata__" else {
                    throw CheckpointError(.invalidState, "a tensor cannot be named \"__metadata__\" in a safetensors shard: \(path ?? "")")
                }
                guard names.insert(name).inserted else {
                    throw CheckpointError(
                        .invalidState,
                        "two tensors would both be named \"\(name)\" in the Hugging Face checkpoint (its names join the keys with dots); rename one")
                }
                tensors.append((name, tensor))
            case .dict(let dict):
                for (key, element) in dict { try child(key.description, element) }
            case .list(let elements), .tuple(let elements):
                for (index, element) in elements.enumerated() { try child(String(index), element) }
            default:
                throw CheckpointError(
                    .invalidState,
                    "\(path ?? "the checkpoint") is not a tensor but a value of kind \(value.kindName), and a Hugging Face checkpoint holds only tensors; leave it out with ignoreKeys (ckpt convert --ignore-keys)")
            }
        }
        try walk(root, name: nil, path: rootPath)
        guard !tensors.isEmpty else {
            throw CheckpointError(
                .invalidState, "\(rootPath ?? "the checkpoint") holds no tensor, so there is nothing to save as a Hugging Face checkpoint")
        }
        return tensors
    }

    /// Writes `tree`'s tensors (see ``tensors(of:)``) as a Hugging Face sharded checkpoint at
    /// `path` (see ``destination(_:)``), in shards of at most `maxShardSize` bytes of tensor
    /// data split by ``HuggingFaceSharded/split(sizes:maxShardSize:)``.
    ///
    /// A previous checkpoint of the same index name stays loadable until the new index replaces
    /// it, unless the new shards take its shards' names: its index is then removed first, so a
    /// crash never leaves an index over a mix of old and new shards. After the commit, shards of
    /// the prefix that the new index does not list (the previous checkpoint's, or those of an
    /// unfinished save) are removed.
    ///
    /// - Returns: The index's path.
    static func save(_ tree: StateValue, to path: String, maxShardSize: Int) throws(CheckpointError) -> String {
        guard maxShardSize >= 1 else {
            throw CheckpointError(.invalidArgument, "the maximum shard size must be at least 1 byte, not \(maxShardSize)")
        }
        let (indexPath, folder, prefix) = try destination(path)
        let tensors = try tensors(of: tree)
        let plan = HuggingFaceSharded.split(sizes: tensors.map(\.tensor.byteCount), maxShardSize: maxShardSize)
        let names = plan.indices.map { HuggingFaceSharded.shardName(prefix: prefix, number: $0 + 1, of: plan.count) }
        try FilePaths.createFolders(folder)
        try uncommitPrevious(indexPath: indexPath, folder: folder, prefix: prefix, newNames: Set(names))

        var written: [String] = []
        var indexBytes: [UInt8] = []
        let layouts = plan.map { members in NativeFormat.layout(plain: members.map { tensors[$0] }) }
        let progress = CheckpointProgress.current
        progress?.begin("saving", totalBytes: layouts.reduce(0) { $0 + NativeFormat.size(of: $1) })
        defer { progress?.finish() }
        do throws(CheckpointError) {
            var record: [HuggingFaceIndex.CommitRecord.Shard] = []
            for (layout, name) in zip(layouts, names) {
                let shardPath = FilePaths.join(folder, name)
                let file = try AtomicFileWriter(path: shardPath, expectedSize: NativeFormat.size(of: layout))
                // Before the commit, which can fail after its rename (its folder's flush).
                written.append(shardPath)
                do {
                    let digest = try NativeFormat.write(layout, to: progress.map { ProgressSink.counting(into: file, $0) } ?? file)
                    try file.commit()
                    record.append(.init(name: name, byteCount: file.position, headerDigest: digest))
                } catch {
                    file.abort()
                    throw error.at(path: shardPath)
                }
            }
            var weightMap: [(tensor: String, shard: String)] = []
            for (members, name) in zip(plan, names) {
                for member in members { weightMap.append((tensors[member].name, name)) }
            }
            let index = HuggingFaceIndex(
                weightMap: weightMap, totalSize: tensors.reduce(0) { $0 + $1.tensor.byteCount },
                record: HuggingFaceIndex.CommitRecord(shards: record))
            indexBytes = Array(index.json().utf8)
            try writeFileAtomically(indexBytes, to: indexPath)
        } catch {
            // The index's commit can fail after its rename (when flushing its folder fails): the
            // new checkpoint then stands, not yet durable, and its shards must stay, as must the
            // previous one's, which a power loss could bring back.
            if !indexBytes.isEmpty, (try? SystemCalls.readFile(indexPath, limit: indexBytes.count)) == indexBytes { throw error }
            // No index lists them: nothing can load them, so they only take space.
            for shardPath in written { SystemCalls.discard(shardPath) }
            throw error
        }
        removeStaleShards(in: folder, prefix: prefix, keeping: Set(names))
        return indexPath
    }

    /// Makes sure no index can name a mix of old and new shards: removes (durably) the index
    /// already at `indexPath` when it lists a shard the new save will overwrite, or when it is
    /// not a valid index (its shards are then unknown); an index that cannot be read fails the
    /// save before anything is written. Refuses a folder holding the single-file
    /// form `PREFIX.safetensors`, which Hugging Face's loaders would read instead of the index.
    private static func uncommitPrevious(
        indexPath: String, folder: String, prefix: String, newNames: Set<String>
    ) throws(CheckpointError) {
        let single = FilePaths.join(folder, prefix + ".safetensors")
        if try SystemCalls.isFolder(single) != nil {
            throw CheckpointError(
                .alreadyExists,
                "the folder holds \(prefix).safetensors, a single-file Hugging Face checkpoint that transformers would load instead of the sharded one; remove it or save to another folder (nothing was written)",
                path: single)
        }
        guard try SystemCalls.isFolder(indexPath) != nil else { return }
        let file = try MappedFile(path: indexPath)
        let previous = withExtendedLifetime(file) { try? HuggingFaceIndex(parsing: file.bytes) }
        if let previous, newNames.isDisjoint(with: previous.shardNames) { return }
        do {
            try SystemCalls.unlink(indexPath)
            try SystemCalls.fsyncDirectory(folder)
        } catch {
            throw CheckpointError(
                error.code,
                "the previous checkpoint's index must be removed before its shards are overwritten, and that failed (nothing was written): \(error.message)",
                path: indexPath, underlying: error.underlying)
        }
        logger.debug("removed the previous index before overwriting its shards", metadata: ["path": "\(indexPath)"])
    }

    /// Removes the shard files of `prefix` in `folder` that the index just committed does not list.
    private static func removeStaleShards(in folder: String, prefix: String, keeping: Set<String>) {
        let names = (try? SystemCalls.folderEntries(folder)) ?? []
        for name in names where HuggingFaceSharded.shardPrefix(of: name) == prefix && !keeping.contains(name) {
            let stale = FilePaths.join(folder, name)
            do {
                try SystemCalls.unlink(stale)
            } catch {
                logger.warning("could not remove \(stale), a shard that no index lists: \(error.message)")
            }
        }
    }
}
