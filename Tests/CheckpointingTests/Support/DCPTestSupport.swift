import BigInt
import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The DCP folders of `Tests/Fixtures/sharded/dcp`, written by torch 2.7, and what
/// `sharded/expected.json` says they hold.
enum DCPFixtures {
    struct ExpectedTensor {
        var dtype: String
        var shape: [Int]
        var sha256: String
    }

    /// Every tensor by FQN, and every other value by FQN (as JSON values).
    static func expected(_ name: String) throws -> (tensors: [String: ExpectedTensor], values: [String: Any]) {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("sharded/expected.json")))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let entry = try #require(root[name] as? [String: Any], "sharded/expected.json describes no \(name)")
        let tensors = try #require(entry["tensors"] as? [String: [String: Any]])
        var result: [String: ExpectedTensor] = [:]
        for (fqn, tensor) in tensors {
            result[fqn] = ExpectedTensor(
                dtype: try #require(tensor["dtype"] as? String), shape: try #require((tensor["shape"] as? [Any])?.compactMap(jsonInt)),
                sha256: try #require(tensor["sha256"] as? String))
        }
        return (result, entry["values"] as? [String: Any] ?? [:])
    }

    /// The fixture folder `dcp/<name>`.
    static func path(_ name: String) -> String { Fixtures.path("sharded/dcp/" + name) }

    /// A copy of the fixture folder `dcp/<name>` inside `folder`, to damage.
    static func copy(_ name: String, into folder: String) throws -> String {
        let target = folder + "/" + name
        try FileManager.default.copyItem(atPath: path(name), toPath: target)
        return target
    }
}

/// `tree` as a DCP round trip gives it back, by DCP's rules (written out here on their own, not
/// with the library's code): every dict key a string (`str(key)`); empty dicts gone, and so
/// every container left with nothing; a walked list (one holding a tensor, a dict or a walked
/// list) cut after its last element that holds something, with `none` in its gaps; every other
/// value (tuples, lists of values) unchanged.
func dcpRoundTripped(_ tree: StateValue) -> StateValue {
    func walked(_ elements: [StateValue]) -> Bool {
        elements.contains { element in
            switch element {
            case .tensor, .dict: true
            case .list(let inner): walked(inner)
            default: false
            }
        }
    }
    func kept(_ value: StateValue) -> StateValue? {
        switch value {
        case .dict(let dict):
            var result = StateDict()
            for (key, child) in dict {
                if let child = kept(child) { result[.string(key.description)] = child }
            }
            return result.isEmpty ? nil : .dict(result)
        case .list(let elements) where walked(elements):
            var children = elements.map(kept)
            while let last = children.last, last == nil { children.removeLast() }
            return children.isEmpty ? nil : .list(children.map { $0 ?? .none })
        default:
            return value
        }
    }
    return kept(tree) ?? .dict([:])
}

/// The bytes of a file, with `edit` applied, written back.
func editFile(_ path: String, _ edit: (inout [UInt8]) throws -> Void) throws {
    var bytes = try readBytes(path)
    try edit(&bytes)
    try writeBytes(bytes, to: path)
}

/// A state to save as DCP: nested dicts with dotted keys, optimizer state with integer keys,
/// param groups in a list, values of every kind, an empty dict, tensors of several dtypes whose
/// first dimensions split unevenly, a 0-dim tensor and an empty one.
func dcpTestState(seed: UInt64 = 21) -> TrainingState {
    var state = composerLikeState(seed: seed)
    // Values are pickled as torch does, so durations as timedeltas: whole microseconds.
    state.timestamp.batchWct = .microseconds(987_654)
    var generator = RandomTree(seed: seed + 1)
    state.model["emb.weight"] = .tensor(generator.tensor(dtype: .bfloat16, shape: [11, 6]))
    state.model["head.weight"] = .tensor(generator.tensor(dtype: .float16, shape: [7, 3, 2]))
    state.model["mask"] = .tensor(generator.tensor(dtype: .bool, shape: [5]))
    state.model["empty"] = .tensor(generator.tensor(dtype: .float32, shape: [0, 4]))
    state.extra["big"] = .int(BigInt(1) << 70)
    state.extra["blob"] = .bytes([0, 1, 255, 128])
    state.extra["layers"] = [.tensor(generator.tensor(dtype: .int64, shape: [3])), "name", 2.5]
    return state
}
