import BigInt

/// Writes a value tree as a protocol-2 pickle that `torch.load(weights_only=True)` accepts:
/// only its opcodes (no memo) and, for tensors, only its globals.
///
/// Dicts are written as plain dicts, lists and tuples as themselves, integers as `K`/`M`/`J`
/// or LONG1, floats as 8-byte big-endian doubles (exact), bytes as `_codecs.encode(latin-1
/// text, "latin1")`. Two values go beyond torch's own allow-list because Composer's layout
/// needs them: durations become `datetime.timedelta` (rounded to microseconds, see
/// ``TimedeltaCoding``), and the uint32 key array of numpy's legacy rng state (the second
/// element of a tuple starting with `"MT19937"`) becomes a numpy array. Loading such a file
/// with `weights_only=True` needs `torch.serialization.safe_globals([datetime.timedelta, ...])`,
/// as any Composer checkpoint does.
struct Pickler {
    private(set) var bytes: [UInt8] = []
    private let storages: TorchStoragePlan
    private var tensorIndex = 0
    private let maximumDepth: Int

    init(storages: TorchStoragePlan, maximumDepth: Int) {
        self.storages = storages
        self.maximumDepth = maximumDepth
    }

    /// The pickle of `tree`, whose tensors `storages` placed (in tree order).
    static func pickle(_ tree: StateValue, storages: TorchStoragePlan, maximumDepth: Int) throws(CheckpointError) -> [UInt8] {
        var pickler = Pickler(storages: storages, maximumDepth: maximumDepth)
        pickler.bytes.append(PickleOpcode.proto.rawValue)
        pickler.bytes.append(2)
        try pickler.write(tree, path: nil, depth: 0)
        pickler.bytes.append(PickleOpcode.stop.rawValue)
        return pickler.bytes
    }

    /// Whether `elements[index]` is the key array of numpy's legacy rng state, which Composer
    /// restores with `np.random.set_state` and so must be a numpy array.
    static func isNumpyRNGKey(_ elements: [StateValue], at index: Int) -> Bool {
        guard index == 1, elements.count >= 2, elements[0] == .string("MT19937"),
            case .tensor(let tensor) = elements[1]
        else { return false }
        return tensor.dtype == .uint32 && tensor.shape.count == 1
    }

    private mutating func op(_ opcode: PickleOpcode) { bytes.append(opcode.rawValue) }

    private mutating func write(_ value: StateValue, path: String?, depth: Int) throws(CheckpointError) {
        guard depth <= maximumDepth else {
            throw ReadingLimits(maximumDepth: maximumDepth).depthExceeded(at: path ?? "")
        }
        switch value {
        case .dict(let dict):
            op(.emptyDict)
            var batch = 0
            for (key, element) in dict {
                if batch == 0 && dict.count > 1 { op(.mark) }
                switch key {
                case .string(let name): string(name)
                case .int(let number): integer(BigInt(number))
                }
                try write(element, path: StatePath.join(path, key.pathComponent), depth: depth + 1)
                batch += 1
                if dict.count == 1 {
                    op(.setItem)
                    batch = 0
                } else if batch == 1000 {
                    op(.setItems)
                    batch = 0
                }
            }
            if batch > 0 { op(.setItems) }
        case .list(let elements):
            op(.emptyList)
            var batch = 0
            for (index, element) in elements.enumerated() {
                if batch == 0 && elements.count > 1 { op(.mark) }
                try write(element, path: StatePath.join(path, String(index)), depth: depth + 1)
                batch += 1
                if elements.count == 1 {
                    op(.append)
                    batch = 0
                } else if batch == 1000 {
                    op(.appends)
                    batch = 0
                }
            }
            if batch > 0 { op(.appends) }
        case .tuple(let elements):
            if elements.count > 3 { op(.mark) }
            for (index, element) in elements.enumerated() {
                let childPath = StatePath.join(path, String(index))
                if Self.isNumpyRNGKey(elements, at: index), case .tensor(let tensor) = element {
                    numpyArray(tensor)
                } else {
                    try write(element, path: childPath, depth: depth + 1)
                }
            }
            switch elements.count {
            case 0: op(.emptyTuple)
            case 1: op(.tuple1)
            case 2: op(.tuple2)
            case 3: op(.tuple3)
            default: op(.tuple)
            }
        case .string(let text): string(text)
        case .int(let number): integer(number)
        case .float(let number):
            op(.binFloat)
            bytes.appendLittleEndian(number.bitPattern.bigEndian)
        case .bool(let flag): op(flag ? .newTrue : .newFalse)
        case .none: op(.none)
        case .bytes(let data): encodedBytes(data)
        case .duration(let duration):
            let parts: (days: Int, seconds: Int, microseconds: Int)
            do {
                parts = try TimedeltaCoding.components(duration)
            } catch {
                throw CheckpointError(error.code, "\(path ?? ""): \(error.message)")
            }
            global("datetime", "timedelta")
            integer(BigInt(parts.days))
            integer(BigInt(parts.seconds))
            integer(BigInt(parts.microseconds))
            op(.tuple3)
            op(.reduce)
        case .tensor(let tensor):
            try self.tensor(tensor, path: path)
        }
    }

    private mutating func global(_ module: String, _ name: String) {
        op(.global)
        bytes += Array(module.utf8)
        bytes.append(0x0A)
        bytes += Array(name.utf8)
        bytes.append(0x0A)
    }

    private mutating func string(_ text: String) {
        op(.binUnicode)
        let utf8 = Array(text.utf8)
        bytes.appendLittleEndian(UInt32(utf8.count))
        bytes += utf8
    }

    private mutating func integer(_ value: BigInt) { Self.appendInteger(value, to: &bytes) }

    /// Appends `value` as the smallest of pickle's integer opcodes that holds it (BININT1,
    /// BININT2, BININT, else LONG1), as Python's pickler chooses.
    static func appendInteger(_ value: BigInt, to bytes: inout [UInt8]) {
        if value >= 0 && value < 256 {
            bytes.append(PickleOpcode.binInt1.rawValue)
            bytes.append(UInt8(value))
        } else if value >= 0 && value < 65536 {
            bytes.append(PickleOpcode.binInt2.rawValue)
            bytes.appendLittleEndian(UInt16(value))
        } else if let small = Int32(exactly: value) {
            bytes.append(PickleOpcode.binInt.rawValue)
            bytes.appendLittleEndian(small)
        } else {
            let encoded = encodeLong(value)
            bytes.append(PickleOpcode.long1.rawValue)
            bytes.append(UInt8(encoded.count))
            bytes += encoded
        }
    }

    /// Little-endian two's complement in as few bytes as keep the sign (Python's `encode_long`).
    static func encodeLong(_ value: BigInt) -> [UInt8] {
        guard value != 0 else { return [] }
        var count = 1
        while true {
            let bits = 8 * count
            let low = -(BigInt(1) << (bits - 1))
            let high = (BigInt(1) << (bits - 1)) - 1
            if value >= low && value <= high { break }
            count += 1
        }
        var twos = value < 0 ? value + (BigInt(1) << (8 * count)) : value
        var result: [UInt8] = []
        result.reserveCapacity(count)
        for _ in 0..<count {
            result.append(UInt8(twos & 0xFF))
            twos >>= 8
        }
        return result
    }

    /// Bytes as protocol 2 stores them: `_codecs.encode(latin-1 text, "latin1")`.
    private mutating func encodedBytes(_ data: [UInt8]) {
        global("_codecs", "encode")
        op(.binUnicode)
        var utf8: [UInt8] = []
        utf8.reserveCapacity(data.count + data.count / 2)
        for byte in data {
            if byte < 0x80 {
                utf8.append(byte)
            } else {
                utf8.append(0xC0 | byte >> 6)
                utf8.append(0x80 | byte & 0x3F)
            }
        }
        bytes.appendLittleEndian(UInt32(utf8.count))
        bytes += utf8
        string("latin1")
        op(.tuple2)
        op(.reduce)
    }

    /// `OrderedDict()`: the empty backward hooks every torch tensor carries.
    private mutating func emptyOrderedDict() {
        global("collections", "OrderedDict")
        op(.emptyTuple)
        op(.reduce)
    }

    private mutating func dimensions(_ values: [Int]) {
        if values.count > 3 { op(.mark) }
        for value in values { integer(BigInt(value)) }
        switch values.count {
        case 0: op(.emptyTuple)
        case 1: op(.tuple1)
        case 2: op(.tuple2)
        case 3: op(.tuple3)
        default: op(.tuple)
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`, or v3 with an
    /// untyped storage and the dtype for dtypes without a typed storage class.
    private mutating func tensor(_ tensor: Tensor, path: String?) throws(CheckpointError) {
        let placement = storages.placements[tensorIndex]
        tensorIndex += 1
        let storage = storages.storages[placement.storage]
        let version3 = TorchDTypes.needsVersion3(tensor.dtype)
        global("torch._utils", version3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2")
        op(.mark)
        op(.mark)
        string("storage")
        if let storageClass = TorchDTypes.storageClass(tensor.dtype), !version3 {
            global("torch", storageClass)
            string(storage.key)
            string("cpu")
            integer(BigInt(storage.byteCount / tensor.dtype.byteSize))
        } else {
            global("torch.storage", "UntypedStorage")
            string(storage.key)
            string("cpu")
            integer(BigInt(storage.byteCount))
        }
        op(.tuple)
        op(.binPersId)
        integer(BigInt(placement.elementOffset))
        dimensions(tensor.shape)
        var strides = [Int](repeating: 1, count: tensor.shape.count)
        var step = 1
        for index in tensor.shape.indices.reversed() {
            strides[index] = step
            step *= max(tensor.shape[index], 1)
        }
        dimensions(strides)
        op(.newFalse)
        emptyOrderedDict()
        if version3 { global("torch", tensor.dtype.rawValue) }
        op(.tuple)
        op(.reduce)
    }

    /// A numpy array, as numpy pickles one under protocol 2.
    private mutating func numpyArray(_ tensor: Tensor) {
        // Only the MT19937 key array comes here: a 1-D uint32 tensor.
        let (code, ordered) = NumpyDType.code(of: tensor.dtype) ?? ("u4", true)
        global("numpy._core.multiarray", "_reconstruct")
        global("numpy", "ndarray")
        integer(0)
        op(.tuple1)
        encodedBytes(Array("b".utf8))
        op(.tuple3)
        op(.reduce)
        op(.mark)
        integer(1)
        dimensions(tensor.shape)
        global("numpy", "dtype")
        string(code)
        op(.newFalse)
        op(.newTrue)
        op(.tuple3)
        op(.reduce)
        op(.mark)
        integer(3)
        string(ordered ? "<" : "|")
        op(.none)
        op(.none)
        op(.none)
        integer(-1)
        integer(-1)
        integer(0)
        op(.tuple)
        op(.build)
        op(.newFalse)
        encodedBytes(tensor.bytes)
        op(.tuple)
        op(.build)
    }
}
