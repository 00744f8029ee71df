import OrderedCollections

extension DCPMetadata {
    /// Reads and checks the bytes of a `.metadata` file.
    ///
    /// The pickle is run by the ``Unpickler`` with the DCP vocabulary: DCP's dataclasses become
    /// plain objects whose attributes are read here field by field, and any other global is
    /// refused before anything is built from it. Fields this library does not need (newer
    /// torch versions add some) are ignored; a field that would change what the bytes mean
    /// (`transform_descriptors`) is refused.
    static func read(_ bytes: UnsafeRawBufferPointer, limits: TorchLimits = .standard) throws(CheckpointError) -> DCPMetadata {
        let unpickler = Unpickler(bytes, fileOffset: 0, storages: nil, limits: limits, vocabulary: .distributedCheckpointMetadata)
        let (scaled, overflow) = bytes.count.multipliedReportingOverflow(by: limits.maximumNodesPerPickleByte)
        let budget = overflow ? Int.max : scaled &+ limits.maximumNodesBase
        var metadata = try unpickler.load { (root) throws(CheckpointError) in
            var decoder = DCPMetadataDecoder(budget: budget)
            return try decoder.metadata(root)
        }
        metadata.listSlotLimit = budget
        try metadata.checkDisjointLocations()
        return metadata
    }
}

/// Reads DCP's dataclasses from the unpickler's objects, checking each field's type.
///
/// Shared references (the memo) can make a small pickle name the same big list many times;
/// every chunk, entry and key decoded is charged to `budget`, which the pickle's size sets, so
/// the work stays proportional to the file.
private struct DCPMetadataDecoder {
    var budget: Int

    private func bad(_ message: String) -> CheckpointError {
        CheckpointError(.malformed, "the .metadata " + message)
    }

    private mutating func charge(_ count: Int = 1) throws(CheckpointError) {
        guard count <= budget else {
            throw CheckpointError(
                .malformed, "the .metadata describes far more entries than its size justifies (it reuses shared objects over and over)")
        }
        budget -= count
    }

    mutating func metadata(_ root: PickleValue) throws(CheckpointError) -> DCPMetadata {
        let fields = try attributes(root, of: .metadata, what: "root")
        guard let stateDict = fields["state_dict_metadata"], case .dict(let entries) = stateDict else {
            throw bad("has no state_dict_metadata dict: it is not a DCP metadata file")
        }
        guard let storageField = fields["storage_data"], case .dict(let storage) = storageField else {
            throw CheckpointError(
                .unsupportedFormat,
                "the .metadata has no storage_data of DCP's file-system layout (MetadataIndex → _StorageInfo); it was written by a storage writer this library does not read")
        }
        let locations = try storageLocations(storage)

        var fqns: [String] = []
        var items: [String: DCPMetadata.Item] = [:]
        for (key, value) in entries.entries {
            try charge()
            guard case .string(let fqn) = key else { throw bad("lists an entry under the integer key \(key); DCP's keys are strings") }
            fqns.append(fqn)
            guard case .object(let object) = value else {
                throw bad("describes \"\(fqn)\" with a \(value.kindName) instead of a TensorStorageMetadata or BytesStorageMetadata")
            }
            switch object.type {
            case .bytesStorageMetadata:
                guard let location = locations[StorageKey(fqn: fqn, offset: nil)] else {
                    throw bad("gives the value \"\(fqn)\" no storage location (storage_data has no entry for it)")
                }
                items[fqn] = .value(location)
            case .tensorStorageMetadata:
                items[fqn] = .tensor(try tensor(object, fqn: fqn, locations: locations))
            default:
                throw bad("describes \"\(fqn)\" with a \(object.type.rawValue) instead of a TensorStorageMetadata or BytesStorageMetadata")
            }
        }
        var saveID: String?
        if let meta = fields["storage_meta"], case .object = meta {
            saveID = try attributes(meta, of: .storageMeta, what: "storage_meta")["save_id"]?.stringValue
        }
        return DCPMetadata(
            fqns: fqns, items: items, keyPaths: try keyPaths(fields["planner_data"], itemCount: fqns.count), saveID: saveID)
    }

    // MARK: Objects

    /// The attributes an object of `type` was given by BUILD (none for an object never built).
    private func attributes(_ value: PickleValue, of type: DCPDataclass, what: String) throws(CheckpointError) -> [String: PickleValue] {
        guard case .object(let object) = value, object.type == type else {
            throw bad("holds a \(value.kindName) where its \(what) should be a \(type.rawValue)")
        }
        guard let state = object.state else { return [:] }
        // A dataclass's state is its __dict__; (dict, slots) when it has slots.
        var source = state
        if let items = state.tupleItems, items.count == 2 { source = items[0] }
        guard case .dict(let dict) = source else {
            throw bad("gives a \(type.rawValue) a \(state.kindName) as its state instead of its attributes")
        }
        var fields: [String: PickleValue] = [:]
        for (key, field) in dict.entries {
            if case .string(let name) = key { fields[name] = field }
        }
        return fields
    }

    /// Non-negative integers from a `torch.Size` (a tuple), a tuple or a list.
    private mutating func dimensions(_ value: PickleValue?, what: String) throws(CheckpointError) -> [Int] {
        guard let value else { throw bad("has no \(what)") }
        let items: [PickleValue]
        if let tuple = value.tupleItems {
            items = tuple
        } else if case .list(let list) = value {
            items = list.items
        } else {
            throw bad("gives \(what) as a \(value.kindName) instead of a torch.Size")
        }
        try charge(items.count)
        var result: [Int] = []
        result.reserveCapacity(items.count)
        for item in items {
            guard let dimension = item.intValue, dimension >= 0 else {
                throw bad("gives \(what) a dimension that is not a non-negative integer (\(item.kindName))")
            }
            result.append(dimension)
        }
        return result
    }

    private func integer(_ value: PickleValue?, what: String) throws(CheckpointError) -> Int {
        guard let value, let integer = value.intValue, integer >= 0 else {
            throw bad("gives \(what) as \(value?.kindName ?? "nothing") instead of a non-negative integer")
        }
        return integer
    }

    // MARK: Tensors

    private mutating func tensor(
        _ object: PickleObject, fqn: String, locations: [StorageKey: DCPMetadata.Location]
    ) throws(CheckpointError) -> DCPMetadata.TensorItem {
        let fields = try attributes(.object(object), of: .tensorStorageMetadata, what: "entry \"\(fqn)\"")
        guard let properties = fields["properties"] else { throw bad("gives tensor \"\(fqn)\" no properties") }
        let dtype = try self.dtype(properties, fqn: fqn)
        let shape = try dimensions(fields["size"], what: "the size of tensor \"\(fqn)\"")
        do {
            _ = try Tensor.byteCount(dtype: dtype, shape: shape)
        } catch {
            throw bad("gives tensor \"\(fqn)\" the size \(shape), too large to address")
        }
        guard let chunkList = fields["chunks"], case .list(let list) = chunkList else {
            throw bad("gives tensor \"\(fqn)\" no list of chunks")
        }
        var chunks: [DCPMetadata.Chunk] = []
        chunks.reserveCapacity(list.items.count)
        for item in list.items {
            try charge()
            let chunk = try attributes(item, of: .chunkStorageMetadata, what: "chunk of \"\(fqn)\"")
            let offsets = try dimensions(chunk["offsets"], what: "the offsets of a chunk of \"\(fqn)\"")
            let sizes = try dimensions(chunk["sizes"], what: "the sizes of a chunk of \"\(fqn)\"")
            let box = TensorSlice(globalShape: shape, offset: offsets, shape: sizes)
            if let problem = box.problem() { throw bad("gives tensor \"\(fqn)\" \(shape) a chunk that \(problem)") }
            guard let location = locations[StorageKey(fqn: fqn, offset: offsets)] else {
                throw bad("gives the chunk of tensor \"\(fqn)\" at offsets \(offsets) no storage location (storage_data has no entry for it)")
            }
            chunks.append(DCPMetadata.Chunk(box: box, location: location))
        }
        if chunks.isEmpty && shape.reduce(1, *) > 0 {
            throw bad("gives tensor \"\(fqn)\" \(shape) no chunks: its data is missing")
        }
        if let problem = TensorSlice.tilingProblem(chunks.map(\.box), of: shape) {
            throw bad("describes chunks of tensor \"\(fqn)\" \(shape) that do not make it up: \(problem)")
        }
        return DCPMetadata.TensorItem(dtype: dtype, shape: shape, chunks: chunks)
    }

    /// The dtype of a `TensorProperties`, whose state is the tuple `(dtype, layout,
    /// requires_grad, memory_format, pin_memory)` (or, from some versions, its attributes).
    private func dtype(_ properties: PickleValue, fqn: String) throws(CheckpointError) -> DType {
        guard case .object(let object) = properties, object.type == .tensorProperties else {
            throw bad("gives tensor \"\(fqn)\" properties that are a \(properties.kindName), not TensorProperties")
        }
        var dtypeValue: PickleValue?
        var layout: PickleValue?
        if let items = object.state?.tupleItems {
            dtypeValue = items.first
            layout = items.count > 1 ? items[1] : nil
        } else {
            let fields = try attributes(properties, of: .tensorProperties, what: "properties of \"\(fqn)\"")
            dtypeValue = fields["dtype"]
            layout = fields["layout"]
        }
        if let layout, let name = layout.stringValue, name != "torch.strided" {
            throw CheckpointError(
                .unsupportedFormat, "the .metadata says tensor \"\(fqn)\" has layout \(name); this library reads dense (torch.strided) tensors only")
        }
        guard case .global(.torchDType(let name, let dtype)) = dtypeValue else {
            throw bad("gives tensor \"\(fqn)\" no dtype")
        }
        guard let dtype else {
            throw CheckpointError(
                .unsupportedFormat, "the .metadata says tensor \"\(fqn)\" has dtype torch.\(name), which this library does not support")
        }
        return dtype
    }

    // MARK: Storage

    /// A `MetadataIndex` as storage_data's key: the FQN, and a chunk's offsets (`nil` for a value).
    struct StorageKey: Hashable {
        var fqn: String
        var offset: [Int]?
    }

    private mutating func storageLocations(_ storage: PickleDict) throws(CheckpointError) -> [StorageKey: DCPMetadata.Location] {
        guard storage.entries.isEmpty else {
            throw CheckpointError(
                .unsupportedFormat,
                "the .metadata's storage_data is keyed by names, not by MetadataIndex: it was written by a storage writer this library does not read")
        }
        var locations: [StorageKey: DCPMetadata.Location] = [:]
        for (key, value) in storage.objectKeyed {
            try charge()
            let index = try attributes(.object(key), of: .metadataIndex, what: "storage_data key")
            guard let fqn = index["fqn"]?.stringValue else { throw bad("has a storage_data key without an FQN") }
            var offset: [Int]?
            if let field = index["offset"], field.tupleItems != nil {
                offset = try dimensions(field, what: "the offset of \"\(fqn)\"'s storage entry")
            }
            let info = try attributes(value, of: .storageInfo, what: "storage location of \"\(fqn)\"")
            if let transforms = info["transform_descriptors"], !isNoneOrEmpty(transforms) {
                throw CheckpointError(
                    .unsupportedFormat,
                    "the .metadata says \"\(fqn)\" is stored transformed (transform_descriptors, such as compression); this library reads untransformed DCP checkpoints only")
            }
            guard let file = info["relative_path"]?.stringValue else { throw bad("gives \"\(fqn)\" a storage location without a file") }
            guard DCPMetadata.isPlainFileName(file) else {
                throw bad("gives \"\(fqn)\" the data file \"\(file)\", which is not a plain file name inside the checkpoint folder; refused")
            }
            let start = try integer(info["offset"], what: "the offset of \"\(fqn)\" in \(file)")
            let length = try integer(info["length"], what: "the length of \"\(fqn)\" in \(file)")
            guard length > 0, start <= Int.max - length else {
                throw bad("gives \"\(fqn)\" an impossible byte range in \(file) (offset \(start), length \(length))")
            }
            let storageKey = StorageKey(fqn: fqn, offset: offset)
            guard locations[storageKey] == nil else {
                throw bad("gives \"\(fqn)\"\(offset.map { " at offsets \($0)" } ?? "") two storage locations")
            }
            locations[storageKey] = DCPMetadata.Location(file: file, offset: start, length: length)
        }
        return locations
    }

    private func isNoneOrEmpty(_ value: PickleValue) -> Bool {
        switch value {
        case .value(.none): true
        case .list(let list): list.items.isEmpty
        case .tuple(let tuple): tuple.items.isEmpty
        default: false
        }
    }

    // MARK: Key paths

    /// `planner_data`: FQN → the tuple of keys it was flattened from. Anything other than a dict
    /// is another planner's data, and the FQNs stay flat keys.
    private mutating func keyPaths(_ value: PickleValue?, itemCount: Int) throws(CheckpointError) -> [String: [DCPKey]]? {
        guard let value, case .dict(let dict) = value else { return nil }
        var paths: [String: [DCPKey]] = [:]
        for (key, entry) in dict.entries {
            guard case .string(let fqn) = key else { continue }
            guard let items = entry.tupleItems ?? (listItems(entry)), !items.isEmpty else {
                throw bad("gives \"\(fqn)\" a key path (planner_data) that is a \(entry.kindName), not a tuple of keys")
            }
            try charge(items.count)
            var path: [DCPKey] = []
            path.reserveCapacity(items.count)
            for item in items {
                if let name = item.stringValue {
                    path.append(.name(name))
                } else if case .value(.int) = item, let index = item.intValue, index >= 0, path.count > 0 {
                    path.append(.index(index))
                } else {
                    throw bad("gives \"\(fqn)\" a key path (planner_data) with a \(item.kindName) key; keys are strings, and list indices after the first key")
                }
            }
            guard DCPKey.fqn(path) == fqn else {
                throw bad("gives \"\(fqn)\" the key path \(path.map(\.description)), which joins to \"\(DCPKey.fqn(path))\", not to its FQN")
            }
            paths[fqn] = path
        }
        return paths
    }

    private func listItems(_ value: PickleValue) -> [PickleValue]? {
        if case .list(let list) = value { return list.items }
        return nil
    }
}
