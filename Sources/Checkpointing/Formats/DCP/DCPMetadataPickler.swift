import BigInt

/// Writes a DCP `.metadata` as torch 2.7's `pickle.dump` writes it: protocol 4, DCP's
/// dataclasses as `cls.__new__(cls)` (NEWOBJ) given their attributes (BUILD), `torch.Size`,
/// dtypes and layouts as the globals torch names, every global named once (STACK_GLOBAL) and
/// then fetched from the memo. No frames (optional in protocol 4) and no other memo entries.
///
/// What it holds: `state_dict_metadata` (each FQN's `TensorStorageMetadata` with its chunks, or
/// `BytesStorageMetadata`), `planner_data` (each FQN's key path), `storage_data` (each chunk's
/// and value's `MetadataIndex` → `_StorageInfo(file, offset, length)`) and `storage_meta`.
struct DCPMetadataPickler {
    /// An entry to describe.
    enum Entry {
        case tensor(dtype: DType, shape: [Int], chunks: [(box: TensorSlice, location: DCPMetadata.Location)])
        case value(DCPMetadata.Location)
    }

    private(set) var bytes: [UInt8] = []
    private var memo: [String: Int] = [:]

    private static let metadataModule = "torch.distributed.checkpoint.metadata"

    /// The `.metadata` of `entries`, in order, each with its FQN and key path.
    static func pickle(
        _ entries: [(fqn: String, path: [DCPKey], entry: Entry)], checkpointID: String, saveID: String
    ) -> [UInt8] {
        var pickler = DCPMetadataPickler()
        pickler.op(.proto)
        pickler.bytes.append(4)
        pickler.object(metadataModule, "Metadata")
        pickler.attributes([
            ("state_dict_metadata", { pickler in pickler.stateDictMetadata(entries) }),
            ("planner_data", { pickler in pickler.plannerData(entries) }),
            ("storage_data", { pickler in pickler.storageData(entries) }),
            ("storage_meta", { pickler in pickler.storageMeta(checkpointID: checkpointID, saveID: saveID) }),
        ])
        pickler.op(.stop)
        return pickler.bytes
    }

    // MARK: The fields

    private mutating func stateDictMetadata(_ entries: [(fqn: String, path: [DCPKey], entry: Entry)]) {
        dict(entries) { pickler, item in
            pickler.string(item.fqn)
            switch item.entry {
            case .value:
                pickler.object(Self.metadataModule, "BytesStorageMetadata")
            case .tensor(let dtype, let shape, let chunks):
                pickler.object(Self.metadataModule, "TensorStorageMetadata")
                pickler.attributes([
                    ("properties", { pickler in pickler.tensorProperties(dtype) }),
                    ("size", { pickler in pickler.size(shape) }),
                    ("chunks", { pickler in
                        pickler.list(chunks) { pickler, chunk in
                            pickler.object(Self.metadataModule, "ChunkStorageMetadata")
                            pickler.attributes([
                                ("offsets", { pickler in pickler.size(chunk.box.offset) }),
                                ("sizes", { pickler in pickler.size(chunk.box.shape) }),
                            ])
                        }
                    }),
                ])
            }
        }
    }

    /// `TensorProperties`, whose state is the tuple `(dtype, layout, requires_grad,
    /// memory_format, pin_memory)`.
    private mutating func tensorProperties(_ dtype: DType) {
        object(Self.metadataModule, "TensorProperties")
        op(.mark)
        global("torch", dtype.rawValue)
        global("torch.serialization", "_get_layout")
        string("torch.strided")
        op(.tuple1)
        op(.reduce)
        op(.newFalse)
        global(Self.metadataModule, "_MEM_FORMAT_ENCODING")
        integer(0)
        op(.tuple1)
        op(.reduce)
        op(.newFalse)
        op(.tuple)
        op(.build)
    }

    private mutating func plannerData(_ entries: [(fqn: String, path: [DCPKey], entry: Entry)]) {
        dict(entries) { pickler, item in
            pickler.string(item.fqn)
            pickler.tuple(item.path) { pickler, key in
                switch key {
                case .name(let name): pickler.string(name)
                case .index(let index): pickler.integer(index)
                }
            }
        }
    }

    private mutating func storageData(_ entries: [(fqn: String, path: [DCPKey], entry: Entry)]) {
        var locations: [(fqn: String, offset: [Int]?, index: Int?, location: DCPMetadata.Location)] = []
        for item in entries {
            switch item.entry {
            case .value(let location): locations.append((item.fqn, nil, nil, location))
            case .tensor(_, _, let chunks):
                for (index, chunk) in chunks.enumerated() { locations.append((item.fqn, chunk.box.offset, index, chunk.location)) }
            }
        }
        dict(locations) { pickler, item in
            // MetadataIndex(fqn, offset, index): a value's has no offset attribute, as torch's.
            pickler.object(Self.metadataModule, "MetadataIndex")
            var fields: [(String, (inout DCPMetadataPickler) -> Void)] = [
                ("fqn", { pickler in pickler.string(item.fqn) }),
                ("index", { pickler in if let index = item.index { pickler.integer(index) } else { pickler.op(.none) } }),
            ]
            if let offset = item.offset { fields.append(("offset", { pickler in pickler.size(offset) })) }
            pickler.attributes(fields)
            pickler.object("torch.distributed.checkpoint.filesystem", "_StorageInfo")
            pickler.attributes([
                ("relative_path", { pickler in pickler.string(item.location.file) }),
                ("offset", { pickler in pickler.integer(item.location.offset) }),
                ("length", { pickler in pickler.integer(item.location.length) }),
            ])
        }
    }

    private mutating func storageMeta(checkpointID: String, saveID: String) {
        object(Self.metadataModule, "StorageMeta")
        attributes([
            ("checkpoint_id", { pickler in pickler.string(checkpointID) }),
            ("save_id", { pickler in pickler.string(saveID) }),
            ("load_id", { pickler in pickler.op(.none) }),
            ("modules", { pickler in pickler.op(.emptyList) }),
        ])
    }

    // MARK: Pickle pieces

    private mutating func op(_ opcode: PickleOpcode) { bytes.append(opcode.rawValue) }

    /// A global, named once and then fetched from the memo.
    private mutating func global(_ module: String, _ name: String) {
        let key = module + "\n" + name
        if let index = memo[key] {
            if index < 256 {
                op(.binGet)
                bytes.append(UInt8(index))
            } else {
                op(.longBinGet)
                bytes.appendLittleEndian(UInt32(index))
            }
            return
        }
        string(module)
        string(name)
        op(.stackGlobal)
        op(.memoize)
        memo[key] = memo.count
    }

    /// `cls.__new__(cls)`: what BUILD then gives its attributes.
    private mutating func object(_ module: String, _ name: String) {
        global(module, name)
        op(.emptyTuple)
        op(.newObj)
    }

    /// BUILD with a dict of attributes, written by the closures in order.
    private mutating func attributes(_ fields: [(String, (inout DCPMetadataPickler) -> Void)]) {
        dict(fields) { pickler, field in
            pickler.string(field.0)
            field.1(&pickler)
        }
        op(.build)
    }

    /// A dict of `items`, each written (key then value) by `write`, in SETITEMS batches of 1000.
    private mutating func dict<T>(_ items: [T], _ write: (inout DCPMetadataPickler, T) -> Void) {
        op(.emptyDict)
        for start in stride(from: 0, to: items.count, by: 1000) {
            op(.mark)
            for item in items[start..<min(items.count, start + 1000)] { write(&self, item) }
            op(.setItems)
        }
    }

    private mutating func list<T>(_ items: [T], _ write: (inout DCPMetadataPickler, T) -> Void) {
        op(.emptyList)
        for start in stride(from: 0, to: items.count, by: 1000) {
            op(.mark)
            for item in items[start..<min(items.count, start + 1000)] { write(&self, item) }
            op(.appends)
        }
    }

    private mutating func tuple<T>(_ items: [T], _ write: (inout DCPMetadataPickler, T) -> Void) {
        if items.count > 3 { op(.mark) }
        for item in items { write(&self, item) }
        switch items.count {
        case 0: op(.emptyTuple)
        case 1: op(.tuple1)
        case 2: op(.tuple2)
        case 3: op(.tuple3)
        default: op(.tuple)
        }
    }

    /// `torch.Size(dimensions)`.
    private mutating func size(_ dimensions: [Int]) {
        global("torch", "Size")
        tuple(dimensions) { pickler, dimension in pickler.integer(dimension) }
        op(.tuple1)
        op(.reduce)
    }

    private mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        if utf8.count < 256 {
            op(.shortBinUnicode)
            bytes.append(UInt8(utf8.count))
        } else {
            op(.binUnicode)
            bytes.appendLittleEndian(UInt32(utf8.count))
        }
        bytes += utf8
    }

    private mutating func integer(_ value: Int) { Pickler.appendInteger(BigInt(value), to: &bytes) }
}
