public import BigInt

/// A node of a checkpoint's value tree.
///
/// The tree holds what Python's pickle and torch's `state_dict` hold: ordered dictionaries,
/// lists, tuples, strings, integers of any size, floats, booleans, none, bytes, durations
/// (Python's `timedelta`) and tensors. Equality is exact: floats compare by bit pattern, so a
/// round trip that changes a NaN payload or the sign of a zero is caught.
public indirect enum StateValue: Sendable, Equatable {
    case dict(StateDict)
    case list([StateValue])
    case tuple([StateValue])
    case string(String)
    case int(BigInt)
    case float(Double)
    case bool(Bool)
    case none
    case bytes([UInt8])
    case duration(Duration)
    case tensor(Tensor)

    /// An integer node from a machine integer.
    public static func int(_ value: Int) -> StateValue { .int(BigInt(value)) }

    public static func == (lhs: StateValue, rhs: StateValue) -> Bool {
        switch (lhs, rhs) {
        case (.dict(let a), .dict(let b)): a == b
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)): a == b
        case (.string(let a), .string(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.float(let a), .float(let b)): a.bitPattern == b.bitPattern
        case (.bool(let a), .bool(let b)): a == b
        case (.none, .none): true
        case (.bytes(let a), .bytes(let b)): a == b
        case (.duration(let a), .duration(let b)): a == b
        case (.tensor(let a), .tensor(let b)): a == b
        default: false
        }
    }

    /// The dictionary, if this node is one.
    public var dictValue: StateDict? { if case .dict(let value) = self { value } else { nil } }
    /// The elements, if this node is a list or a tuple.
    public var elements: [StateValue]? {
        switch self {
        case .list(let value), .tuple(let value): value
        default: nil
        }
    }
    /// The string, if this node is one.
    public var stringValue: String? { if case .string(let value) = self { value } else { nil } }
    /// The integer, if this node is one that fits in `Int`.
    public var intValue: Int? { if case .int(let value) = self { Int(exactly: value) } else { nil } }
    /// The float, if this node is one.
    public var floatValue: Double? { if case .float(let value) = self { value } else { nil } }
    /// The boolean, if this node is one.
    public var boolValue: Bool? { if case .bool(let value) = self { value } else { nil } }
    /// The duration, if this node is one.
    public var durationValue: Duration? { if case .duration(let value) = self { value } else { nil } }
    /// The tensor, if this node is one.
    public var tensorValue: Tensor? { if case .tensor(let value) = self { value } else { nil } }

    /// A short name of the node's kind, for messages.
    public var kindName: String {
        switch self {
        case .dict: "dict"
        case .list: "list"
        case .tuple: "tuple"
        case .string: "string"
        case .int: "int"
        case .float: "float"
        case .bool: "bool"
        case .none: "none"
        case .bytes: "bytes"
        case .duration: "duration"
        case .tensor: "tensor"
        }
    }

    /// Calls `body` for every tensor in the tree, with its flattened path, in tree order.
    public func forEachTensor(_ body: (_ path: String, _ tensor: Tensor) throws -> Void) rethrows {
        try forEachTensor(path: nil, body)
    }

    private func forEachTensor(
        path: String?, _ body: (_ path: String, _ tensor: Tensor) throws -> Void
    ) rethrows {
        switch self {
        case .tensor(let tensor):
            try body(path ?? "", tensor)
        case .dict(let dict):
            for (key, value) in dict {
                try value.forEachTensor(path: StatePath.join(path, key.pathComponent), body)
            }
        case .list(let elements), .tuple(let elements):
            for (index, value) in elements.enumerated() {
                try value.forEachTensor(path: StatePath.join(path, String(index)), body)
            }
        default:
            break
        }
    }

    /// Every tensor in the tree with its flattened path, in tree order.
    public var tensors: [(path: String, tensor: Tensor)] {
        var result: [(path: String, tensor: Tensor)] = []
        forEachTensor { result.append(($0, $1)) }
        return result
    }

    /// The node at a flattened path, or `nil` when there is none.
    public subscript(path path: String) -> StateValue? {
        guard let keys = try? StatePath.split(path) else { return nil }
        var node = self
        for key in keys where !(key.isEmpty && keys.count == 1) {
            switch node {
            case .dict(let dict):
                guard let child = dict[.string(key)] ?? Int(key).flatMap({ dict[.int($0)] }) else {
                    return nil
                }
                node = child
            case .list(let elements), .tuple(let elements):
                guard let index = Int(key), elements.indices.contains(index) else { return nil }
                node = elements[index]
            default:
                return nil
            }
        }
        return node
    }

    /// A copy of the tree in which every tensor owns its bytes (see ``Tensor/owningCopy()``).
    public func owningCopy() -> StateValue {
        switch self {
        case .tensor(let tensor): .tensor(tensor.owningCopy())
        case .dict(let dict): .dict(dict.mapValues { $0.owningCopy() })
        case .list(let elements): .list(elements.map { $0.owningCopy() })
        case .tuple(let elements): .tuple(elements.map { $0.owningCopy() })
        default: self
        }
    }
}

// Deliberately not ExpressibleByNilLiteral: in an `Optional<StateValue>` context a `nil` that
// meant `.none` would silently mean "absent" instead.
extension StateValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(BigInt(value)) }
    public init(floatLiteral value: Double) { self = .float(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: StateValue...) { self = .list(elements) }
    public init(dictionaryLiteral elements: (StateKey, StateValue)...) {
        self = .dict(StateDict(elements))
    }
}
