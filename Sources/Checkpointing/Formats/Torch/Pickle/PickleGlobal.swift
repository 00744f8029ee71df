/// The Python classes and functions a pickle may name: torch's weights-only allow-list plus
/// what Composer checkpoints hold (see the DocC article "The formats on disk"). Any other global is refused when the pickle
/// names it, before anything is built from it.
enum PickleGlobal: Equatable {
    case orderedDict, counter
    case rebuildTensorV2, rebuildTensorV3, rebuildParameter, rebuildParameterWithState, rebuildFromTypeV2
    /// `torch.Tensor` and `torch.nn.parameter.Parameter`: the types `_rebuild_from_type_v2` names.
    case tensorClass, parameterClass
    /// `torch.FloatStorage` and the other typed storage classes; `nil` for a dtype this library lacks.
    case typedStorage(name: String, dtype: DType?)
    case untypedStorage
    /// `torch.float32` and the other dtypes; `nil` for a dtype this library lacks.
    case torchDType(name: String, dtype: DType?)
    case torchSize, torchDevice
    case codecsEncode
    case builtinSet, builtinComplex, builtinBytearray
    case timedelta
    case numpyReconstruct(module: String), numpyNDArray, numpyDType
    case torchVersion
    /// What only a DCP `.metadata` may name (``PickleVocabulary/distributedCheckpointMetadata``).
    case dcpMetadata(DCPMetadataGlobal, qualifiedName: String)

    /// Modules torch refuses whatever the allow-list says.
    static let blockedModules: Set<String> = ["os", "posix", "nt", "sys"]

    /// The global `module.name`, or an error naming it when it is not allowed.
    static func resolve(module: String, name: String) throws(CheckpointError) -> PickleGlobal {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("collections", "Counter"): return .counter
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor_v3"): return .rebuildTensorV3
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): return .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch._tensor", "Tensor"): return .tensorClass
        case ("torch.nn.parameter", "Parameter"): return .parameterClass
        case ("torch.storage", "UntypedStorage"), ("torch", "UntypedStorage"): return .untypedStorage
        case ("torch", "Size"): return .torchSize
        case ("torch", "device"): return .torchDevice
        case ("_codecs", "encode"): return .codecsEncode
        case ("builtins", "set"), ("__builtin__", "set"): return .builtinSet
        case ("builtins", "complex"), ("__builtin__", "complex"): return .builtinComplex
        case ("builtins", "bytearray"), ("__builtin__", "bytearray"): return .builtinBytearray
        case ("datetime", "timedelta"): return .timedelta
        case ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"):
            return .numpyReconstruct(module: module)
        case ("numpy", "ndarray"): return .numpyNDArray
        case ("numpy", "dtype"): return .numpyDType
        case ("torch.torch_version", "TorchVersion"): return .torchVersion
        default: break
        }
        if module == "torch" {
            if let dtype = TorchDTypes.storageClasses[name] { return .typedStorage(name: name, dtype: dtype) }
            if let dtype = TorchDTypes.dtypes[name] { return .torchDType(name: name, dtype: dtype) }
        }
        let qualified = module + "." + name
        let root = String(module.prefix { $0 != "." })
        if blockedModules.contains(root) {
            throw CheckpointError(
                .disallowedGlobal,
                "the pickle names the global \(qualified), from module \(root), which is always refused: this file tries to run code when it is loaded; nothing was built from it")
        }
        throw CheckpointError(
            .disallowedGlobal,
            "the pickle names the global \(qualified), which is not on the allow-list (torch.load(weights_only=True)'s list plus datetime.timedelta, numpy arrays and TorchVersion, which Composer checkpoints hold); it was refused before anything was built from it")
    }

    /// The name as Python spells it, for messages.
    var qualifiedName: String {
        switch self {
        case .orderedDict: "collections.OrderedDict"
        case .counter: "collections.Counter"
        case .rebuildTensorV2: "torch._utils._rebuild_tensor_v2"
        case .rebuildTensorV3: "torch._utils._rebuild_tensor_v3"
        case .rebuildParameter: "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: "torch._tensor._rebuild_from_type_v2"
        case .tensorClass: "torch.Tensor"
        case .parameterClass: "torch.nn.parameter.Parameter"
        case .typedStorage(let name, _): "torch." + name
        case .untypedStorage: "torch.storage.UntypedStorage"
        case .torchDType(let name, _): "torch." + name
        case .torchSize: "torch.Size"
        case .torchDevice: "torch.device"
        case .codecsEncode: "_codecs.encode"
        case .builtinSet: "builtins.set"
        case .builtinComplex: "builtins.complex"
        case .builtinBytearray: "builtins.bytearray"
        case .timedelta: "datetime.timedelta"
        case .numpyReconstruct(let module): module + "._reconstruct"
        case .numpyNDArray: "numpy.ndarray"
        case .numpyDType: "numpy.dtype"
        case .torchVersion: "torch.torch_version.TorchVersion"
        case .dcpMetadata(_, let qualifiedName): qualifiedName
        }
    }
}
