/// Which pickles the ``Unpickler`` reads, by where they come from.
///
/// Each vocabulary is an explicit allow-list of opcodes and globals; whatever is not on it is
/// refused, naming it, before anything is built from it.
enum PickleVocabulary: Sendable {
    /// A torch file's `data.pkl` (also every item of a DCP folder, which is a `torch.save`
    /// archive): the opcodes and globals of `torch.load(weights_only=True)` plus Composer's
    /// (``PickleGlobal/resolve(module:name:)``).
    case torchWeightsOnly
    /// A PyTorch Distributed Checkpoint's `.metadata`: protocol 4 (FRAME, STACK_GLOBAL,
    /// SHORT_BINUNICODE, MEMOIZE) and DCP's own dataclasses, read as plain data: NEWOBJ makes an
    /// empty object of an allowed class and BUILD sets its attributes; nothing of theirs runs.
    case distributedCheckpointMetadata

    /// Whether `opcode` may appear.
    func allows(_ opcode: PickleOpcode) -> Bool {
        self == .distributedCheckpointMetadata || !opcode.isProtocolFour
    }

    /// What a refused opcode is refused by, for messages.
    var refuser: String {
        switch self {
        case .torchWeightsOnly: "torch.load(weights_only=True) does not accept"
        case .distributedCheckpointMetadata: "a DCP .metadata never holds"
        }
    }

    /// The global `module.name`, or an error naming it when this vocabulary does not allow it.
    func resolve(module: String, name: String) throws(CheckpointError) -> PickleGlobal {
        switch self {
        case .torchWeightsOnly: try PickleGlobal.resolve(module: module, name: name)
        case .distributedCheckpointMetadata: try PickleGlobal.resolveInDCPMetadata(module: module, name: name)
        }
    }
}

/// A class or function a DCP `.metadata` may name (torch 2.x: the classes moved between
/// modules over the versions, and both homes are accepted).
enum DCPMetadataGlobal: Equatable, Sendable {
    /// A dataclass, made with NEWOBJ and given its attributes with BUILD.
    case dataclass(DCPDataclass)
    /// `torch.serialization._get_layout("torch.strided")`: read as the layout's name.
    case layout
    /// DCP's memory-format enum (`_MEM_FORMAT_ENCODING(0)`): read as its integer.
    case memoryFormat
    /// `pathlib.PosixPath("a", "b")` (the checkpoint id in `storage_meta`): read as a string.
    case path
}

/// The dataclasses of a DCP `.metadata`.
enum DCPDataclass: String, Sendable {
    case metadata = "Metadata"
    case tensorStorageMetadata = "TensorStorageMetadata"
    case bytesStorageMetadata = "BytesStorageMetadata"
    case chunkStorageMetadata = "ChunkStorageMetadata"
    case tensorProperties = "TensorProperties"
    case metadataIndex = "MetadataIndex"
    case storageMeta = "StorageMeta"
    case storageInfo = "_StorageInfo"
}

/// An object of an allowed dataclass: its class and the state BUILD gave it (a dict of
/// attributes, or `TensorProperties`' tuple), plain data to be read field by field.
final class PickleObject {
    let type: DCPDataclass
    var state: PickleValue?

    init(_ type: DCPDataclass) { self.type = type }
}

extension PickleGlobal {
    /// The global `module.name` of a DCP `.metadata`: DCP's dataclasses and the few helpers
    /// their pickles call, `torch.Size`, dtypes and `OrderedDict`; any other is refused.
    static func resolveInDCPMetadata(module: String, name: String) throws(CheckpointError) -> PickleGlobal {
        let qualified = module + "." + name
        switch (module, name) {
        case ("torch", "Size"): return .torchSize
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch.serialization", "_get_layout"): return .dcpMetadata(.layout, qualifiedName: qualified)
        case ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
            ("torch.distributed._shard.sharded_tensor.metadata", "MEM_FORMAT_ENCODING"):
            return .dcpMetadata(.memoryFormat, qualifiedName: qualified)
        case ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PureWindowsPath"):
            return .dcpMetadata(.path, qualifiedName: qualified)
        case ("torch.distributed._shard.sharded_tensor.metadata", "TensorProperties"):
            return .dcpMetadata(.dataclass(.tensorProperties), qualifiedName: qualified)
        case ("torch.distributed.checkpoint.filesystem", "_StorageInfo"):
            return .dcpMetadata(.dataclass(.storageInfo), qualifiedName: qualified)
        case ("torch.distributed.checkpoint.metadata", let name):
            if let dataclass = DCPDataclass(rawValue: name), dataclass != .storageInfo {
                return .dcpMetadata(.dataclass(dataclass), qualifiedName: qualified)
            }
        case ("torch", let name):
            if let dtype = TorchDTypes.dtypes[name] { return .torchDType(name: name, dtype: dtype) }
        default: break
        }
        let root = String(module.prefix { $0 != "." })
        if blockedModules.contains(root) {
            throw CheckpointError(
                .disallowedGlobal,
                "the .metadata pickle names the global \(qualified), from module \(root), which is always refused: this file tries to run code when it is loaded; nothing was built from it")
        }
        throw CheckpointError(
            .disallowedGlobal,
            "the .metadata pickle names the global \(qualified), which is not one of the classes a PyTorch Distributed Checkpoint's metadata holds (its dataclasses, torch.Size, dtypes, layouts, memory formats, paths); it was refused before anything was built from it")
    }
}
