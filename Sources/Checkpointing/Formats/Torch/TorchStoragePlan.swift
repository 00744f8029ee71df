/// Which storage record each tensor of a tree is written to.
///
/// A Swift ``Tensor`` has no storage object, so sharing is decided by memory: tensors whose
/// bytes overlap in memory (views of one buffer, copies of one tensor value, or tensors read
/// from one storage of a `.pt` file) share one storage record, written once, and each becomes
/// a view of it at its element offset, as torch writes views. Tensors of different dtypes, or
/// whose offsets are not a whole number of elements apart, never share (torch cannot express
/// that); neither do empty tensors.
struct TorchStoragePlan {
    struct Storage {
        var key: String
        var bytes: UnsafeRawBufferPointer
        var byteCount: Int { bytes.count }
    }

    struct Placement {
        var storage: Int
        var elementOffset: Int
    }

    /// The storages in key order, which is the order the pickle first meets them.
    private(set) var storages: [Storage] = []
    /// Each tensor's storage and offset, in the order the pickle writes the tensors.
    private(set) var placements: [Placement] = []
    /// Keeps every tensor's memory alive while the plan points into it.
    private let tensors: [Tensor]

    init(_ tree: StateValue) {
        var tensors: [Tensor] = []
        Self.collect(tree, into: &tensors)
        self.tensors = tensors

        // Sort by dtype and address, then merge runs whose bytes overlap.
        let order = tensors.indices.sorted { a, b in
            let x = tensors[a], y = tensors[b]
            if x.dtype != y.dtype { return x.dtype.rawValue < y.dtype.rawValue }
            let xBase = UInt(bitPattern: x.buffer.bytes.baseAddress), yBase = UInt(bitPattern: y.buffer.bytes.baseAddress)
            if xBase != yBase { return xBase < yBase }
            return x.byteCount > y.byteCount
        }
        var group = [Int](repeating: 0, count: tensors.count)
        var groups: [(base: UInt, end: UInt)] = []
        var current: (dtype: DType, base: UInt, end: UInt)?
        for index in order {
            let tensor = tensors[index]
            let base = UInt(bitPattern: tensor.buffer.bytes.baseAddress)
            let end = base + UInt(tensor.byteCount)
            if let open = current, open.dtype == tensor.dtype, tensor.byteCount > 0, base < open.end,
                (base - open.base) % UInt(tensor.dtype.byteSize) == 0
            {
                current!.end = max(open.end, end)
                groups[groups.count - 1].end = current!.end
            } else {
                current = tensor.byteCount > 0 ? (tensor.dtype, base, end) : nil
                groups.append((base, end))
            }
            group[index] = groups.count - 1
        }

        var keyOfGroup = [Int?](repeating: nil, count: groups.count)
        for (index, tensor) in tensors.enumerated() {
            let owner = group[index]
            let storage: Int
            if let known = keyOfGroup[owner] {
                storage = known
            } else {
                storage = storages.count
                keyOfGroup[owner] = storage
                let (base, end) = groups[owner]
                storages.append(
                    Storage(key: String(storage), bytes: UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: base), count: Int(end - base))))
            }
            let base = UInt(bitPattern: tensor.buffer.bytes.baseAddress)
            placements.append(
                Placement(storage: storage, elementOffset: Int(base - groups[owner].base) / tensor.dtype.byteSize))
        }
    }

    /// The tensors of `tree` in the order the pickler writes them, leaving out the numpy arrays.
    private static func collect(_ value: StateValue, into tensors: inout [Tensor]) {
        switch value {
        case .tensor(let tensor): tensors.append(tensor)
        case .dict(let dict): for (_, element) in dict { collect(element, into: &tensors) }
        case .list(let elements): for element in elements { collect(element, into: &tensors) }
        case .tuple(let elements):
            for (index, element) in elements.enumerated() where !Pickler.isNumpyRNGKey(elements, at: index) {
                collect(element, into: &tensors)
            }
        default: break
        }
    }
}
