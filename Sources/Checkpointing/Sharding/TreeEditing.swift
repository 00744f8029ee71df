/// Tree walks that sharding needs: tensors with their typed key paths, and replacing,
/// removing or inserting tensors by path.
extension StateValue {
    /// Calls `body` for every tensor with its typed keys and its flattened path, in tree order.
    /// A list or tuple element's key is its index.
    func forEachTensorWithKeys(_ body: (_ keys: [StateKey], _ path: String, _ tensor: Tensor) throws -> Void) rethrows {
        var keys: [StateKey] = []
        try walkTensors(keys: &keys, path: nil, body)
    }

    private func walkTensors(
        keys: inout [StateKey], path: String?, _ body: (_ keys: [StateKey], _ path: String, _ tensor: Tensor) throws -> Void
    ) rethrows {
        switch self {
        case .tensor(let tensor):
            try body(keys, path ?? "", tensor)
        case .dict(let dict):
            for (key, value) in dict {
                keys.append(key)
                try value.walkTensors(keys: &keys, path: StatePath.join(path, key.pathComponent), body)
                keys.removeLast()
            }
        case .list(let elements), .tuple(let elements):
            for (index, value) in elements.enumerated() {
                keys.append(.int(index))
                try value.walkTensors(keys: &keys, path: StatePath.join(path, String(index)), body)
                keys.removeLast()
            }
        default:
            break
        }
    }

    /// The tree with every tensor passed through `transform`, by flattened path: `nil` removes
    /// it from its dict, or makes it `none` in a list or tuple (so indices keep their meaning).
    func mappingTensors(_ transform: (_ path: String, _ tensor: Tensor) throws -> Tensor?) rethrows -> StateValue? {
        try mappingTensors(path: nil, transform)
    }

    private func mappingTensors(path: String?, _ transform: (_ path: String, _ tensor: Tensor) throws -> Tensor?) rethrows -> StateValue? {
        switch self {
        case .tensor(let tensor):
            return try transform(path ?? "", tensor).map(StateValue.tensor)
        case .dict(let dict):
            var result = StateDict()
            for (key, value) in dict {
                if let mapped = try value.mappingTensors(path: StatePath.join(path, key.pathComponent), transform) {
                    result[key] = mapped
                }
            }
            return .dict(result)
        case .list(let elements), .tuple(let elements):
            var result: [StateValue] = []
            for (index, value) in elements.enumerated() {
                result.append(try value.mappingTensors(path: StatePath.join(path, String(index)), transform) ?? .none)
            }
            if case .tuple = self { return .tuple(result) }
            return .list(result)
        default:
            return self
        }
    }

    /// The tree with `value` placed at `keys`, creating dicts on the way; a list or tuple is
    /// indexed by an integer key, which may name an element or the one after the last.
    func inserting(_ value: StateValue, at keys: ArraySlice<StateKey>) throws(CheckpointError) -> StateValue {
        guard let key = keys.first else { return value }
        let rest = keys.dropFirst()
        switch self {
        case .dict(var dict):
            dict[key] = try (dict[key] ?? .dict([:])).inserting(value, at: rest)
            return .dict(dict)
        case .list(var elements), .tuple(var elements):
            guard case .int(let index) = key, (0...elements.count).contains(index) else {
                throw CheckpointError(.invalidState, "cannot place a tensor at key \"\(key)\" of a list of \(elements.count) elements")
            }
            let child = index < elements.count ? elements[index] : .dict([:])
            let placed = try child.inserting(value, at: rest)
            if index < elements.count { elements[index] = placed } else { elements.append(placed) }
            if case .tuple = self { return .tuple(elements) }
            return .list(elements)
        default:
            throw CheckpointError(.invalidState, "cannot place a tensor under a \(kindName) at key \"\(key)\"")
        }
    }
}
