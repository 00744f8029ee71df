import BigInt
import Foundation

/// The non-tensor part of a checkpoint tree as JSON, stored in the native format's
/// `__metadata__`. Tensors appear as references to their safetensors entries.
///
/// Every value round-trips bit-exactly: integers of any size as decimal strings, floats in
/// their shortest exact decimal form (or their bit pattern when a NaN carries a payload),
/// durations as whole seconds plus attoseconds, bytes as base64.
indirect enum TreeNode: Codable, Equatable {
    case dict([Entry])
    case list([TreeNode])
    case tuple([TreeNode])
    case string(String)
    case int(String)
    case float(String)
    case floatBits(String)
    case bool(Bool)
    case none
    case bytes(Data)
    case duration(seconds: Int64, attoseconds: Int64)
    case tensor(String)

    /// One entry of a dict: a string key (`s`) or an integer key (`i`), and its value.
    struct Entry: Codable, Equatable {
        var s: String?
        var i: Int?
        var v: TreeNode
    }

    private enum Kind: String, CodingKey {
        case dict, list, tuple, string = "str", int, float, floatBits = "float_bits", bool, none, bytes,
            duration, tensor
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Kind.self)
        guard container.allKeys.count == 1, let kind = container.allKeys.first else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "a tree node must have exactly one kind key"))
        }
        switch kind {
        case .dict: self = .dict(try container.decode([Entry].self, forKey: kind))
        case .list: self = .list(try container.decode([TreeNode].self, forKey: kind))
        case .tuple: self = .tuple(try container.decode([TreeNode].self, forKey: kind))
        case .string: self = .string(try container.decode(String.self, forKey: kind))
        case .int: self = .int(try container.decode(String.self, forKey: kind))
        case .float: self = .float(try container.decode(String.self, forKey: kind))
        case .floatBits: self = .floatBits(try container.decode(String.self, forKey: kind))
        case .bool: self = .bool(try container.decode(Bool.self, forKey: kind))
        case .none: self = .none
        case .bytes: self = .bytes(try container.decode(Data.self, forKey: kind))
        case .duration:
            let parts = try container.decode([Int64].self, forKey: kind)
            guard parts.count == 2 else {
                throw DecodingError.dataCorruptedError(
                    forKey: kind, in: container, debugDescription: "a duration is [seconds, attoseconds]")
            }
            self = .duration(seconds: parts[0], attoseconds: parts[1])
        case .tensor: self = .tensor(try container.decode(String.self, forKey: kind))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Kind.self)
        switch self {
        case .dict(let entries): try container.encode(entries, forKey: .dict)
        case .list(let nodes): try container.encode(nodes, forKey: .list)
        case .tuple(let nodes): try container.encode(nodes, forKey: .tuple)
        case .string(let value): try container.encode(value, forKey: .string)
        case .int(let value): try container.encode(value, forKey: .int)
        case .float(let value): try container.encode(value, forKey: .float)
        case .floatBits(let value): try container.encode(value, forKey: .floatBits)
        case .bool(let value): try container.encode(value, forKey: .bool)
        case .none: try container.encodeNil(forKey: .none)
        case .bytes(let value): try container.encode(value, forKey: .bytes)
        case .duration(let seconds, let attoseconds): try container.encode([seconds, attoseconds], forKey: .duration)
        case .tensor(let path): try container.encode(path, forKey: .tensor)
        }
    }
}

/// Converts between the value tree and its JSON description.
enum TreeCoding {
    /// Deeper trees are refused: Foundation's JSON coders stop at 512 levels and a dict level
    /// takes 3 of them. The depth a load or save allows, ``ReadingLimits/maximumDepth``, is
    /// checked on the whole tree first (``ReadingLimits/checkDepth(of:path:)``) and never
    /// exceeds this.
    static let maximumDepth = ReadingLimits.deepestSupportedDepth

    /// Describes `value`, calling `tensor` for each tensor with its flattened path (in tree order).
    static func encode(
        _ value: StateValue, path: String? = nil, depth: Int = 0,
        tensor: (String, Tensor) throws(CheckpointError) -> Void
    ) throws(CheckpointError) -> TreeNode {
        guard depth <= maximumDepth else {
            throw ReadingLimits(maximumDepth: maximumDepth).depthExceeded(at: path ?? "")
        }
        func child(_ value: StateValue, _ component: String) throws(CheckpointError) -> TreeNode {
            try encode(value, path: StatePath.join(path, component), depth: depth + 1, tensor: tensor)
        }
        switch value {
        case .dict(let dict):
            var entries: [TreeNode.Entry] = []
            entries.reserveCapacity(dict.count)
            for (key, element) in dict {
                let node = try child(element, key.pathComponent)
                switch key {
                case .string(let name): entries.append(.init(s: name, i: nil, v: node))
                case .int(let number): entries.append(.init(s: nil, i: number, v: node))
                }
            }
            return .dict(entries)
        case .list(let elements):
            var nodes: [TreeNode] = []
            for (index, element) in elements.enumerated() { nodes.append(try child(element, String(index))) }
            return .list(nodes)
        case .tuple(let elements):
            var nodes: [TreeNode] = []
            for (index, element) in elements.enumerated() { nodes.append(try child(element, String(index))) }
            return .tuple(nodes)
        case .string(let string): return .string(string)
        case .int(let integer): return .int(String(integer))
        case .float(let number):
            let text = number.description
            if let parsed = Double(text), parsed.bitPattern == number.bitPattern { return .float(text) }
            return .floatBits(String(number.bitPattern, radix: 16))
        case .bool(let flag): return .bool(flag)
        case .none: return .none
        case .bytes(let bytes): return .bytes(Data(bytes))
        case .duration(let duration):
            return .duration(seconds: duration.components.seconds, attoseconds: duration.components.attoseconds)
        case .tensor(let value):
            try tensor(path ?? "", value)
            return .tensor(path ?? "")
        }
    }

    /// Rebuilds the tree from its description, looking each tensor up by its reference.
    ///
    /// A reference must be the flattened path of the place it sits in the tree: the checksum
    /// recorded under that name is then the one checked for that place.
    ///
    /// `limit` (at most ``maximumDepth``) is the reader's ``ReadingLimits/maximumDepth``: a
    /// hostile tree is refused as soon as it passes it, with the error every format gives.
    static func decode(
        _ node: TreeNode, path: String? = nil, depth: Int = 0, limit: Int = maximumDepth,
        tensor: (String) throws(CheckpointError) -> Tensor
    ) throws(CheckpointError) -> StateValue {
        guard depth <= min(limit, maximumDepth) else {
            throw ReadingLimits(maximumDepth: min(limit, maximumDepth)).depthExceeded(at: path ?? "")
        }
        func child(_ node: TreeNode, _ component: String) throws(CheckpointError) -> StateValue {
            try decode(node, path: StatePath.join(path, component), depth: depth + 1, limit: limit, tensor: tensor)
        }
        switch node {
        case .dict(let entries):
            var dict = StateDict()
            for entry in entries {
                let key: StateKey
                switch (entry.s, entry.i) {
                case (let name?, nil): key = .string(name)
                case (nil, let number?): key = .int(number)
                default:
                    throw CheckpointError(.malformed, "a dict entry of the tree has neither or both of a string and an integer key")
                }
                guard dict[key] == nil else {
                    throw CheckpointError(.malformed, "the tree holds the key \"\(key)\" twice in one dict")
                }
                dict[key] = try child(entry.v, key.pathComponent)
            }
            return .dict(dict)
        case .list(let nodes):
            var elements: [StateValue] = []
            for (index, node) in nodes.enumerated() { elements.append(try child(node, String(index))) }
            return .list(elements)
        case .tuple(let nodes):
            var elements: [StateValue] = []
            for (index, node) in nodes.enumerated() { elements.append(try child(node, String(index))) }
            return .tuple(elements)
        case .string(let string): return .string(string)
        case .int(let text):
            guard let integer = BigInt(text, radix: 10) else {
                throw CheckpointError(.malformed, "the tree holds an invalid integer \"\(text.prefix(40))\"")
            }
            return .int(integer)
        case .float(let text):
            guard let number = Double(text) else {
                throw CheckpointError(.malformed, "the tree holds an invalid float \"\(text.prefix(40))\"")
            }
            return .float(number)
        case .floatBits(let text):
            guard let bits = UInt64(text, radix: 16) else {
                throw CheckpointError(.malformed, "the tree holds an invalid float bit pattern \"\(text.prefix(40))\"")
            }
            return .float(Double(bitPattern: bits))
        case .bool(let flag): return .bool(flag)
        case .none: return .none
        case .bytes(let data): return .bytes(Array(data))
        case .duration(let seconds, let attoseconds):
            return .duration(Duration(secondsComponent: seconds, attosecondsComponent: attoseconds))
        case .tensor(let reference):
            guard reference == path ?? "" else {
                throw CheckpointError(
                    .malformed, "the tree places tensor \"\(reference)\" at \"\(path ?? "")\"; the header is damaged")
            }
            return .tensor(try tensor(reference))
        }
    }
}
