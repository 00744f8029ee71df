import BigInt
import Logging
import OrderedCollections

/// A pickle reader that builds a value tree and never runs code.
///
/// It accepts exactly the opcodes and globals of its ``PickleVocabulary``: for a torch file,
/// what torch's weights-only unpickler accepts, with the globals of ``PickleGlobal``; for a DCP
/// `.metadata`, protocol 4 and DCP's dataclasses. A global outside the list is refused when the
/// pickle names it, before anything is built from it. Calls (REDUCE, NEWOBJ, BUILD) are
/// interpreted, not executed: each allowed global has its meaning written here. Every length is checked against the bytes that
/// remain before anything is allocated, and the memo, nesting and the tree's size are bounded
/// (``TorchLimits``).
final class Unpickler {
    private var input: ByteReader
    private let limits: TorchLimits
    /// The storages tensors are rebuilt from; `nil` where a pickle may hold no tensor.
    private let storages: TorchStorageReader?
    private let vocabulary: PickleVocabulary
    private var stack: [PickleValue] = []
    private var marks: [[PickleValue]] = []
    private var memo: [UInt32: PickleValue] = [:]
    /// Where the opcode being run starts, for errors.
    private var opcodeOffset = 0
    private let containers = PickleContainers()

    init(
        _ pickle: UnsafeRawBufferPointer, fileOffset: Int, storages: TorchStorageReader?, limits: TorchLimits,
        vocabulary: PickleVocabulary = .torchWeightsOnly
    ) {
        input = ByteReader(
            pickle, fileOffset: fileOffset,
            what: vocabulary == .torchWeightsOnly ? "the pickle (data.pkl)" : "the .metadata pickle")
        self.limits = limits
        self.storages = storages
        self.vocabulary = vocabulary
    }

    /// Reads the pickle and returns its value tree.
    func load() throws(CheckpointError) -> StateValue {
        try load { (root) throws(CheckpointError) in
            let (scaled, overflow) = input.bytes.count.multipliedReportingOverflow(by: limits.maximumNodesPerPickleByte)
            var builder = PickleTreeBuilder(
                maximumNodes: overflow ? Int.max : scaled &+ limits.maximumNodesBase, maximumDepth: limits.maximumDepth)
            return try builder.build(root)
        }
    }

    /// Reads the pickle and hands its root object to `decode`, which reads what it needs from
    /// it before the objects are released (a DCP `.metadata` is read this way, field by field).
    func load<T>(decoding decode: (PickleValue) throws(CheckpointError) -> T) throws(CheckpointError) -> T {
        defer {
            stack = []
            marks = []
            memo = [:]
            containers.releaseAll()
        }
        let root: PickleValue
        do {
            root = try run()
        } catch {
            var located = error
            if located.offset == nil { located.offset = opcodeOffset }
            throw located
        }
        return try decode(root)
    }

    private func failure(_ message: String) -> CheckpointError {
        CheckpointError(.malformed, message, offset: opcodeOffset)
    }

    private func pop() throws(CheckpointError) -> PickleValue {
        guard let value = stack.popLast() else { throw failure("the pickle pops from an empty stack") }
        return value
    }

    private func top() throws(CheckpointError) -> PickleValue {
        guard let value = stack.last else { throw failure("the pickle uses the top of an empty stack") }
        return value
    }

    /// The items pushed since the last MARK, which is removed.
    private func popMark() throws(CheckpointError) -> [PickleValue] {
        guard let outer = marks.popLast() else { throw failure("the pickle closes a MARK that was never opened") }
        let items = stack
        stack = outer
        return items
    }

    private func run() throws(CheckpointError) -> PickleValue {
        while true {
            opcodeOffset = input.offset
            let byte = try input.readByte()
            guard let opcode = PickleOpcode(rawValue: byte), vocabulary.allows(opcode) else {
                let name = PickleOpcodeNames.refused[byte].map { " (\($0))" } ?? ""
                throw failure("the pickle uses opcode 0x\(String(byte, radix: 16))\(name), which \(vocabulary.refuser)")
            }
            switch opcode {
            case .proto:
                let version = try input.readByte()
                guard version <= 5 else { throw failure("the pickle claims protocol \(version), which does not exist") }
            case .stop:
                return try pop()
            case .mark:
                guard marks.count < limits.maximumDepth else {
                    throw failure("the pickle nests more than \(limits.maximumDepth) MARKs")
                }
                marks.append(stack)
                stack = []
            case .binInt: stack.append(.value(.int(BigInt(try input.read(Int32.self)))))
            case .binInt1: stack.append(.value(.int(BigInt(try input.readByte()))))
            case .binInt2: stack.append(.value(.int(BigInt(try input.read(UInt16.self)))))
            case .long1:
                let count = Int(try input.readByte())
                stack.append(.value(.int(Self.decodeLong(try input.read(count: count)))))
            case .binFloat:
                stack.append(.value(.float(Double(bitPattern: UInt64(bigEndian: UInt64(littleEndian: try input.read(UInt64.self)))))))
            case .newTrue: stack.append(.value(.bool(true)))
            case .newFalse: stack.append(.value(.bool(false)))
            case .none: stack.append(.value(.none))
            case .binUnicode:
                let length = try input.read(UInt32.self)
                guard UInt64(length) <= UInt64(input.remaining) else { throw input.truncated(Int(length)) }
                stack.append(.value(.string(try utf8(try input.read(count: Int(length))))))
            case .shortBinString, .shortBinUnicode:
                // torch.load decodes protocol-2 byte strings as UTF-8.
                let length = Int(try input.readByte())
                stack.append(.value(.string(try utf8(try input.read(count: length)))))
            case .emptyTuple: stack.append(.tuple(tuple([])))
            case .tuple1:
                let a = try pop()
                stack.append(.tuple(tuple([a])))
            case .tuple2:
                let b = try pop(), a = try pop()
                stack.append(.tuple(tuple([a, b])))
            case .tuple3:
                let c = try pop(), b = try pop(), a = try pop()
                stack.append(.tuple(tuple([a, b, c])))
            case .tuple: stack.append(.tuple(tuple(try popMark())))
            case .emptyList: stack.append(.list(containers.register(PickleList())))
            case .append:
                let item = try pop()
                try list(try top()).items.append(item)
            case .appends:
                let items = try popMark()
                try list(try top()).items.append(contentsOf: items)
            case .emptyDict: stack.append(.dict(containers.register(PickleDict())))
            case .emptySet: stack.append(.list(containers.register(PickleList())))
            case .setItem:
                let value = try pop(), key = try pop()
                try setItem(of: try dict(try top()), key: key, value: value)
            case .setItems:
                let items = try popMark()
                guard items.count % 2 == 0 else { throw failure("SETITEMS has an odd number of items") }
                let target = try dict(try top())
                for index in stride(from: 0, to: items.count, by: 2) {
                    try setItem(of: target, key: items[index], value: items[index + 1])
                }
            case .global:
                let module = try line()
                let name = try line()
                stack.append(.global(try vocabulary.resolve(module: module, name: name)))
            case .stackGlobal:
                let name = try pop(), module = try pop()
                guard let module = module.stringValue, let name = name.stringValue else {
                    throw failure("STACK_GLOBAL names a global with a \(module.kindName) and a \(name.kindName) instead of two strings")
                }
                stack.append(.global(try vocabulary.resolve(module: module, name: name)))
            case .frame:
                // Frames only group opcodes for buffered reading; the length must fit what remains.
                let length = try input.read(UInt64.self)
                guard length <= UInt64(input.remaining) else { throw input.truncated(Int(clamping: length)) }
            case .memoize: try put(UInt32(clamping: memo.count))
            case .reduce:
                let arguments = try pop()
                let callable = try pop()
                guard case .global(let global) = callable else {
                    throw failure("REDUCE calls a \(callable.kindName), which is not a function")
                }
                guard let items = arguments.tupleItems else {
                    throw failure("REDUCE calls \(global.qualifiedName) with a \(arguments.kindName) instead of an argument tuple")
                }
                stack.append(try call(global, items))
            case .newObj:
                let arguments = try pop()
                let type = try pop()
                guard case .global(let global) = type, let items = arguments.tupleItems else {
                    throw failure("NEWOBJ creates a \(type.kindName), which is not a class")
                }
                stack.append(try newObject(global, items))
            case .build:
                let state = try pop()
                try build(try top(), state: state)
            case .binPersId:
                guard let storages else { throw failure("the pickle refers to a storage (BINPERSID), which a DCP .metadata never holds") }
                stack.append(.storage(try persistentLoad(try pop(), storages: storages)))
            case .binPut: try put(UInt32(try input.readByte()))
            case .longBinPut: try put(try input.read(UInt32.self))
            case .binGet: try get(UInt32(try input.readByte()))
            case .longBinGet: try get(try input.read(UInt32.self))
            }
        }
    }

    // MARK: Operands

    private func utf8(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) -> String {
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw failure("a string in the pickle is not valid UTF-8 (Python allows lone surrogates there; a checkpoint tree cannot)")
        }
        return string
    }

    /// A GLOBAL operand: text up to a newline, of bounded length.
    private func line() throws(CheckpointError) -> String {
        let available = min(input.remaining, limits.maximumGlobalLength + 1)
        let window = UnsafeRawBufferPointer(rebasing: input.bytes[input.position..<(input.position + available)])
        guard let newline = window.firstIndex(of: UInt8(ascii: "\n")) else {
            throw failure(
                input.remaining <= limits.maximumGlobalLength
                    ? "the pickle is truncated inside a GLOBAL" : "a GLOBAL name is longer than \(limits.maximumGlobalLength) bytes")
        }
        let text = try utf8(try input.read(count: newline))
        try input.skip(1)
        return text
    }

    /// A LONG1 operand: little-endian two's complement.
    static func decodeLong(_ bytes: UnsafeRawBufferPointer) -> BigInt {
        guard let last = bytes.last else { return 0 }
        var magnitude = BigUInt(0)
        for byte in bytes.reversed() { magnitude = magnitude << 8 | BigUInt(byte) }
        var value = BigInt(magnitude)
        if last & 0x80 != 0 { value -= BigInt(1) << (8 * bytes.count) }
        return value
    }

    private func put(_ index: UInt32) throws(CheckpointError) {
        if memo[index] == nil {
            guard memo.count < limits.maximumMemoEntries else {
                throw CheckpointError(
                    .limitExceeded,
                    "the pickle's memo holds more than \(limits.maximumMemoEntries) entries (ReadingLimits.maximumMemoEntries; ckpt: --max-pickle-memo)",
                    offset: opcodeOffset)
            }
        }
        memo[index] = try top()
    }

    private func get(_ index: UInt32) throws(CheckpointError) {
        guard let value = memo[index] else { throw failure("the pickle reads memo entry \(index), which was never stored") }
        stack.append(value)
    }

    private func list(_ value: PickleValue) throws(CheckpointError) -> PickleList {
        guard case .list(let list) = value else { throw failure("the pickle appends to a \(value.kindName), not a list") }
        return list
    }

    private func dict(_ value: PickleValue) throws(CheckpointError) -> PickleDict {
        guard case .dict(let dict) = value else { throw failure("the pickle sets an item of a \(value.kindName), not a dict") }
        return dict
    }

    /// `dict[key] = value`; an object key (DCP's `MetadataIndex`) only in a `.metadata`.
    private func setItem(of dict: PickleDict, key: PickleValue, value: PickleValue) throws(CheckpointError) {
        if case .object(let object) = key, vocabulary == .distributedCheckpointMetadata {
            dict.objectKeyed.append((object, value))
        } else {
            dict.entries[try dictKey(key)] = value
        }
    }

    private func dictKey(_ value: PickleValue) throws(CheckpointError) -> StateKey {
        switch value {
        case .value(.string(let string)): return .string(string)
        case .value(.int(let integer)):
            guard let int = Int(exactly: integer) else { throw failure("a dict key \(integer) does not fit in 64 bits") }
            return .int(int)
        // Python's True and False are the keys 1 and 0.
        case .value(.bool(let flag)): return .int(flag ? 1 : 0)
        default:
            throw failure("a dict key is a \(value.kindName); checkpoint trees have string and integer keys only")
        }
    }

    // MARK: Persistent ids

    /// BINPERSID: `("storage", storage_class, key, location, numel)`.
    private func persistentLoad(_ id: PickleValue, storages: TorchStorageReader) throws(CheckpointError) -> TorchStorage {
        guard let items = id.tupleItems, items.count == 5, items[0].stringValue == "storage" else {
            throw failure("a persistent id is not a storage reference (\"storage\", class, key, location, numel)")
        }
        guard case .global(let storageClass) = items[1] else {
            throw failure("a storage reference names a \(items[1].kindName) as its class")
        }
        guard let key = items[2].stringValue, items[3].stringValue != nil, let numel = items[4].intValue, numel >= 0 else {
            throw failure("a storage reference has a malformed key, location or size")
        }
        switch storageClass {
        case .untypedStorage:
            return try storages.storage(key: key, dtype: nil, className: storageClass.qualifiedName, numel: numel)
        case .typedStorage(let name, let dtype?):
            return try storages.storage(key: key, dtype: dtype, className: name, numel: numel)
        case .typedStorage(let name, nil):
            throw CheckpointError(
                .unsupportedFormat, "storage \"\(key)\" is a torch.\(name), whose dtype this library does not support", offset: opcodeOffset)
        default:
            throw failure("a storage reference names \(storageClass.qualifiedName), which is not a storage class")
        }
    }

    // MARK: Calls

    /// REDUCE: what calling an allowed global with these arguments means.
    private func call(_ global: PickleGlobal, _ arguments: [PickleValue]) throws(CheckpointError) -> PickleValue {
        func arity(_ counts: ClosedRange<Int>) throws(CheckpointError) {
            guard counts.contains(arguments.count) else {
                throw failure("\(global.qualifiedName) is called with \(arguments.count) arguments")
            }
        }
        switch global {
        case .orderedDict, .counter:
            try arity(0...1)
            let dict = containers.register(PickleDict())
            if let source = arguments.first { try fill(dict, from: source, caller: global) }
            return .dict(dict)
        case .rebuildTensorV2:
            try arity(6...7)
            return .value(.tensor(try rebuildTensor(arguments, dtype: nil, metadata: arguments.count == 7 ? arguments[6] : nil)))
        case .rebuildTensorV3:
            try arity(7...8)
            guard case .global(.torchDType(let name, let dtype)) = arguments[6] else {
                throw failure("_rebuild_tensor_v3's dtype argument is a \(arguments[6].kindName)")
            }
            guard let dtype else {
                throw CheckpointError(
                    .unsupportedFormat, "a tensor has dtype torch.\(name), which this library does not support", offset: opcodeOffset)
            }
            return .value(.tensor(try rebuildTensor(arguments, dtype: dtype, metadata: arguments.count == 8 ? arguments[7] : nil)))
        case .rebuildParameter, .rebuildParameterWithState:
            try arity(global == .rebuildParameter ? 3...3 : 4...4)
            guard case .value(.tensor) = arguments[0] else {
                throw failure("\(global.qualifiedName) wraps a \(arguments[0].kindName), not a tensor")
            }
            return arguments[0]
        case .rebuildFromTypeV2:
            // (function, type, arguments, state): a tensor subclass or a tensor with attributes.
            try arity(4...4)
            guard case .global(let function) = arguments[0],
                [.rebuildTensorV2, .rebuildTensorV3, .rebuildParameter, .rebuildParameterWithState].contains(function)
            else {
                throw failure("_rebuild_from_type_v2 calls a \(arguments[0].kindName), not a tensor rebuild function")
            }
            guard case .global(let type) = arguments[1], type == .tensorClass || type == .parameterClass else {
                throw CheckpointError(
                    .unsupportedFormat, "_rebuild_from_type_v2 makes a \(arguments[1].kindName); only torch.Tensor and torch.nn.Parameter are read",
                    offset: opcodeOffset)
            }
            guard let inner = arguments[2].tupleItems else {
                throw failure("_rebuild_from_type_v2's arguments are a \(arguments[2].kindName), not a tuple")
            }
            return try call(function, inner)
        case .torchSize:
            try arity(0...1)
            guard let items = arguments.isEmpty ? [] : (arguments[0].tupleItems ?? listItems(arguments[0])) else {
                throw failure("torch.Size is called with a \(arguments[0].kindName)")
            }
            return .tuple(tuple(items))
        case .torchDevice:
            try arity(1...2)
            guard let type = arguments[0].stringValue else { throw failure("torch.device is called with a \(arguments[0].kindName)") }
            if arguments.count == 2, let index = arguments[1].intValue { return .value(.string("\(type):\(index)")) }
            return .value(.string(type))
        case .codecsEncode:
            try arity(1...2)
            guard let text = arguments[0].stringValue else { throw failure("_codecs.encode is called with a \(arguments[0].kindName)") }
            return .value(.bytes(try encode(text, encoding: arguments.count == 2 ? arguments[1].stringValue : "utf-8")))
        case .builtinSet:
            try arity(0...1)
            guard let items = arguments.isEmpty ? [] : (listItems(arguments[0]) ?? arguments[0].tupleItems) else {
                throw failure("set is called with a \(arguments[0].kindName)")
            }
            let list = containers.register(PickleList())
            list.items = items
            return .list(list)
        case .builtinComplex:
            try arity(2...2)
            for argument in arguments {
                guard case .value(let value) = argument, value.floatValue != nil || value.intValue != nil else {
                    throw failure("complex is called with a \(argument.kindName)")
                }
            }
            return .tuple(tuple(arguments))
        case .builtinBytearray:
            try arity(0...2)
            if arguments.isEmpty { return .value(.bytes([])) }
            if case .value(.bytes) = arguments[0], arguments.count == 1 { return arguments[0] }
            guard let text = arguments[0].stringValue else { throw failure("bytearray is called with a \(arguments[0].kindName)") }
            return .value(.bytes(try encode(text, encoding: arguments.count == 2 ? arguments[1].stringValue : nil)))
        case .timedelta:
            try arity(0...3)
            var parts: [BigInt] = []
            for argument in arguments {
                guard let integer = argument.integerValue else { throw failure("timedelta is called with a \(argument.kindName)") }
                parts.append(integer)
            }
            while parts.count < 3 { parts.append(0) }
            return .value(.duration(try TimedeltaCoding.duration(days: parts[0], seconds: parts[1], microseconds: parts[2])))
        case .numpyReconstruct:
            try arity(3...3)
            guard case .global(.numpyNDArray) = arguments[0] else {
                throw CheckpointError(
                    .unsupportedFormat, "numpy's _reconstruct makes a \(arguments[0].kindName); only numpy.ndarray is read", offset: opcodeOffset)
            }
            return .numpyArray(NumpyArray())
        case .numpyDType:
            try arity(1...3)
            guard let code = arguments[0].stringValue else { throw failure("numpy.dtype is called with a \(arguments[0].kindName)") }
            return .numpyDType(NumpyDType(code: code))
        case .dcpMetadata(.layout, _):
            // torch.serialization._get_layout("torch.strided")
            try arity(1...1)
            guard let name = arguments[0].stringValue else { throw failure("\(global.qualifiedName) is called with a \(arguments[0].kindName)") }
            return .value(.string(name))
        case .dcpMetadata(.memoryFormat, _):
            try arity(1...1)
            guard let code = arguments[0].integerValue else { throw failure("\(global.qualifiedName) is called with a \(arguments[0].kindName)") }
            return .value(.int(code))
        case .dcpMetadata(.path, _):
            var parts: [String] = []
            for argument in arguments {
                guard let part = argument.stringValue else { throw failure("\(global.qualifiedName) is called with a \(argument.kindName)") }
                parts.append(part)
            }
            return .value(.string(parts.joined(separator: "/")))
        case .tensorClass, .parameterClass, .typedStorage, .untypedStorage, .torchDType, .numpyNDArray, .torchVersion,
            .dcpMetadata(.dataclass, _):
            throw failure("the pickle calls \(global.qualifiedName) in a way \(vocabulary == .torchWeightsOnly ? "torch" : "DCP") never writes")
        }
    }

    /// NEWOBJ: `cls.__new__(cls, *arguments)` for the classes that pickle that way.
    private func newObject(_ type: PickleGlobal, _ arguments: [PickleValue]) throws(CheckpointError) -> PickleValue {
        switch type {
        case .parameterClass:
            guard let tensor = arguments.first, case .value(.tensor) = tensor else {
                throw failure("torch.nn.Parameter is created from a \(arguments.first?.kindName ?? "nothing")")
            }
            return tensor
        case .torchVersion:
            // A str subclass; read as the string it is.
            guard arguments.count == 1, let version = arguments[0].stringValue else {
                throw failure("TorchVersion is created from something other than a string")
            }
            return .value(.string(version))
        case .orderedDict, .counter:
            return .dict(containers.register(PickleDict()))
        case .dcpMetadata(.dataclass(let dataclass), _):
            // A dataclass pickles as cls.__new__(cls) and its attributes set by BUILD.
            guard arguments.isEmpty else {
                throw failure("\(type.qualifiedName) is created with \(arguments.count) arguments; DCP creates its objects empty")
            }
            return .object(containers.register(PickleObject(dataclass)))
        default:
            throw failure("the pickle creates a \(type.qualifiedName) with NEWOBJ, which torch never writes")
        }
    }

    /// BUILD: set the state of the object on top of the stack.
    private func build(_ target: PickleValue, state: PickleValue) throws(CheckpointError) {
        switch target {
        case .dict:
            // An OrderedDict's instance attributes, such as a state_dict's `_metadata` (module
            // versions). A checkpoint tree has no place for attributes of a dict;
            // torch's load_state_dict works without them.
            switch state {
            case .dict, .value(.none), .tuple: logger.debug("dropping the attributes of a pickled OrderedDict")
            default: throw failure("BUILD gives a dict a \(state.kindName) as its state")
            }
        case .numpyArray(let array):
            guard let storages else { throw failure("BUILD gives a numpy array its contents where no array may be") }
            try array.build(state: state, reader: storages)
        case .numpyDType(let dtype): try dtype.build(state: state)
        case .object(let object):
            guard object.state == nil else { throw failure("BUILD sets the state of a \(object.type.rawValue) twice") }
            object.state = state
        default:
            throw failure("BUILD sets the state of a \(target.kindName), which torch's weights-only loader refuses")
        }
    }

    private func tuple(_ items: [PickleValue]) -> PickleTuple { containers.register(PickleTuple(items)) }

    private func listItems(_ value: PickleValue) -> [PickleValue]? {
        if case .list(let list) = value { list.items } else { nil }
    }

    /// `OrderedDict(source)`: from a dict, or from a list or tuple of key-value pairs.
    private func fill(_ dict: PickleDict, from source: PickleValue, caller: PickleGlobal) throws(CheckpointError) {
        switch source {
        case .dict(let other):
            for (key, value) in other.entries { dict.entries[key] = value }
        default:
            guard let pairs = listItems(source) ?? source.tupleItems else {
                throw failure("\(caller.qualifiedName) is called with a \(source.kindName)")
            }
            for pair in pairs {
                guard let items = pair.tupleItems ?? listItems(pair), items.count == 2 else {
                    throw failure("\(caller.qualifiedName) is given an item that is not a key-value pair")
                }
                dict.entries[try dictKey(items[0])] = items[1]
            }
        }
    }

    /// `_codecs.encode(text, encoding)`: how protocol 2 stores bytes (latin-1 text).
    private func encode(_ text: String, encoding: String?) throws(CheckpointError) -> [UInt8] {
        switch encoding.map({ String($0.lowercased().map { $0 == "_" ? "-" : $0 }) }) {
        case "latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1":
            var bytes: [UInt8] = []
            bytes.reserveCapacity(text.unicodeScalars.count)
            for scalar in text.unicodeScalars {
                guard scalar.value <= 0xFF else { throw failure("text encoded as latin-1 holds U+\(String(scalar.value, radix: 16))") }
                bytes.append(UInt8(scalar.value))
            }
            return bytes
        case "utf-8", "utf8", nil:
            return Array(text.utf8)
        case "ascii", "us-ascii":
            guard text.utf8.allSatisfy({ $0 < 0x80 }) else { throw failure("text encoded as ASCII holds non-ASCII characters") }
            return Array(text.utf8)
        case let other?:
            throw CheckpointError(.unsupportedFormat, "bytes are encoded as \(other), which this library does not decode", offset: opcodeOffset)
        }
    }

    // MARK: Tensors

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` and v3,
    /// whose dtype comes from its argument rather than the storage.
    private func rebuildTensor(
        _ arguments: [PickleValue], dtype explicit: DType?, metadata: PickleValue?
    ) throws(CheckpointError) -> Tensor {
        guard case .storage(let storage) = arguments[0], let storages else {
            throw failure("a tensor is rebuilt from a \(arguments[0].kindName) instead of a storage")
        }
        guard let dtype = explicit ?? storage.dtype else {
            throw failure("a tensor of the untyped storage \"\(storage.key)\" does not say its dtype")
        }
        guard let offset = arguments[1].intValue else { throw failure("a tensor's storage offset is a \(arguments[1].kindName)") }
        let size = try dimensions(arguments[2], what: "size")
        let stride = try dimensions(arguments[3], what: "stride")
        if let metadata, case .dict(let flags) = metadata {
            // conj and neg bits: set, they change what the bytes mean.
            for (key, value) in flags.entries {
                if case .value(.bool(false)) = value { continue }
                throw CheckpointError(
                    .unsupportedFormat,
                    "a tensor carries the lazy \"\(key)\" bit, which this library does not apply; call resolve_conj() / resolve_neg() before saving",
                    offset: opcodeOffset)
            }
        }
        do {
            return try storages.tensor(storage: storage, dtype: dtype, offset: offset, size: size, stride: stride)
        } catch {
            var located = error
            if located.offset == nil { located.offset = opcodeOffset }
            throw located
        }
    }

    private func dimensions(_ value: PickleValue, what: String) throws(CheckpointError) -> [Int] {
        guard let items = value.tupleItems ?? listItems(value) else {
            throw failure("a tensor's \(what) is a \(value.kindName), not a tuple")
        }
        var result: [Int] = []
        result.reserveCapacity(items.count)
        for item in items {
            guard let dimension = item.intValue else { throw failure("a tensor's \(what) holds a \(item.kindName)") }
            result.append(dimension)
        }
        return result
    }
}
