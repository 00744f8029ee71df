/// numpy arrays in a pickle, as Composer's rng state holds them (`np.random.get_state()`).
///
/// A numpy array pickles as `_reconstruct(ndarray, (0,), b'b')` followed by a BUILD whose state
/// is `(version, shape, dtype, is_fortran, raw_bytes)`; its dtype as `dtype('u4', False, True)`
/// followed by a BUILD whose state is `(3, byte_order, ...)`. This library reads such an array
/// as a ``Tensor`` (row-major, little-endian) and writes the tensor that numpy's legacy rng
/// state holds (the second element of a tuple that starts with `"MT19937"`) back as a numpy
/// array, so Composer's `np.random.set_state` gets what it expects.
final class NumpyArray {
    var tensor: Tensor?
}

final class NumpyDType {
    /// numpy's type code without byte order: `u4`, `f8`, `b1`.
    let code: String
    /// `<` little, `>` big, `|` not applicable, `=` native.
    var byteOrder: Character = "="

    init(code: String) { self.code = code }

    var description: String { String(byteOrder) + code }

    /// The tensor dtype of numpy's type code (numpy has no bfloat16 or float8).
    var dtype: DType? { Self.codes[code] }

    var isBigEndian: Bool { byteOrder == ">" }

    static let codes: [String: DType] = [
        "b1": .bool, "u1": .uint8, "i1": .int8, "i2": .int16, "u2": .uint16, "i4": .int32, "u4": .uint32,
        "i8": .int64, "u8": .uint64, "f2": .float16, "f4": .float32, "f8": .float64, "c8": .complex64,
        "bool": .bool, "uint8": .uint8, "int8": .int8, "int16": .int16, "uint16": .uint16, "int32": .int32,
        "uint32": .uint32, "int64": .int64, "uint64": .uint64, "float16": .float16, "float32": .float32,
        "float64": .float64, "complex64": .complex64,
    ]

    /// numpy's type code of a dtype, and whether byte order applies to it.
    static func code(of dtype: DType) -> (code: String, ordered: Bool)? {
        switch dtype {
        case .bool: ("b1", false)
        case .uint8: ("u1", false)
        case .int8: ("i1", false)
        case .int16: ("i2", true)
        case .uint16: ("u2", true)
        case .int32: ("i4", true)
        case .uint32: ("u4", true)
        case .int64: ("i8", true)
        case .uint64: ("u8", true)
        case .float16: ("f2", true)
        case .float32: ("f4", true)
        case .float64: ("f8", true)
        case .complex64: ("c8", true)
        case .bfloat16, .float8_e4m3fn, .float8_e5m2: nil
        }
    }
}

extension NumpyArray {
    /// Applies a BUILD state `([version,] shape, dtype, is_fortran, raw_bytes)`.
    func build(state: PickleValue, reader: TorchStorageReader) throws(CheckpointError) {
        guard tensor == nil else {
            throw CheckpointError(.malformed, "a numpy array is given its contents twice")
        }
        guard var items = state.tupleItems, items.count == 4 || items.count == 5 else {
            throw CheckpointError(.malformed, "a numpy array's state is a \(state.kindName), not (version, shape, dtype, is_fortran, data)")
        }
        if items.count == 5 { items.removeFirst() }
        guard let shapeItems = items[0].tupleItems else {
            throw CheckpointError(.malformed, "a numpy array's shape is a \(items[0].kindName), not a tuple")
        }
        var shape: [Int] = []
        for item in shapeItems {
            guard let dimension = item.intValue, dimension >= 0 else {
                throw CheckpointError(.malformed, "a numpy array's shape holds \(item.kindName) rather than a dimension")
            }
            shape.append(dimension)
        }
        guard case .numpyDType(let numpyDType) = items[1] else {
            throw CheckpointError(.malformed, "a numpy array's dtype is a \(items[1].kindName)")
        }
        guard let dtype = numpyDType.dtype else {
            throw CheckpointError(
                .unsupportedFormat, "a numpy array has dtype \(numpyDType.description), which this library has no tensor dtype for")
        }
        guard case .value(.bool(let fortran)) = items[2] else {
            throw CheckpointError(.malformed, "a numpy array's is_fortran flag is a \(items[2].kindName)")
        }
        guard case .value(.bytes(let raw)) = items[3] else {
            throw CheckpointError(
                .unsupportedFormat, "a numpy array's data is a \(items[3].kindName), not bytes (object arrays are not supported)")
        }
        let count: Int
        do {
            count = try Tensor.byteCount(dtype: dtype, shape: shape)
        } catch {
            throw CheckpointError(.malformed, "a numpy array has an impossible shape \(shape)")
        }
        guard count == raw.count else {
            throw CheckpointError(
                .malformed, "a numpy array of dtype \(numpyDType.description) and shape \(shape) needs \(count) bytes but holds \(raw.count)")
        }
        try reader.chargeMaterialized(count, what: "a numpy array of shape \(shape)")
        let buffer = TensorBuffer.allocate(byteCount: count)
        let destination = UnsafeMutableRawPointer(mutating: buffer.bytes.baseAddress!)
        if count > 0 {
            raw.withUnsafeBytes { source in
            if fortran && shape.count > 1 {
                // Column-major: element (i, j, ...) sits at i*1 + j*size[0] + ...
                var stride: [Int] = []
                var step = 1
                for dimension in shape {
                    stride.append(step)
                    step *= dimension
                }
                TorchStorageReader.gather(
                    from: source.baseAddress!, offset: 0, size: shape, stride: stride, elementSize: dtype.byteSize,
                    into: destination)
            } else {
                destination.copyMemory(from: source.baseAddress!, byteCount: count)
            }
            }
        }
        if numpyDType.isBigEndian {
            TorchStorageReader.swapBytes(destination, count: count, unit: TorchStorageReader.swapUnit(dtype))
        }
        tensor = Tensor(dtype: dtype, shape: shape, buffer: buffer)
    }
}

extension NumpyDType {
    /// Applies a BUILD state `(version, byte_order, subarray, names, fields, elsize, alignment, flags)`.
    func build(state: PickleValue) throws(CheckpointError) {
        guard let items = state.tupleItems, items.count >= 2, let order = items[1].stringValue,
            let character = order.first, order.count == 1, "<>|=".contains(character)
        else {
            throw CheckpointError(.malformed, "numpy dtype \(code) has a state this library does not understand")
        }
        if items.count > 3, case .value(.none) = items[3] {} else if items.count > 3 {
            throw CheckpointError(.unsupportedFormat, "numpy dtype \(code) is a structured dtype, which this library does not read")
        }
        byteOrder = character
    }
}
