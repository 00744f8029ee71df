import BigInt
import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Every torch and Composer fixture loads with exactly the values `expected.json` gives; the
/// malicious and legacy ones are refused.
@Suite struct TorchFixtureTests {
    /// `expected.json`'s value trees with every scalar typed, so that Swift compares exactly:
    /// Python's json keeps 2**70 an integer and 0.1 a float, Foundation's does not.
    private static let canonicalScript = """
        import json, sys
        def node(entry):
            if "tensor" in entry:
                t = entry["tensor"]
                return {"t": "tensor", "dtype": t["dtype"], "shape": t["shape"], "sha256": t["sha256"], "hex": t.get("hex")}
            if "dict" in entry:
                return {"t": "dict", "items": [[{"t": "int", "v": str(k)} if isinstance(k, int) else {"t": "str", "v": k}, node(v)] for k, v in entry["dict"]]}
            if "list" in entry:
                return {"t": "list", "items": [node(v) for v in entry["list"]]}
            if "tuple" in entry:
                return {"t": "tuple", "items": [node(v) for v in entry["tuple"]]}
            return scalar(entry["value"])
        def scalar(v):
            if v is None: return {"t": "none"}
            if isinstance(v, bool): return {"t": "bool", "v": v}
            if isinstance(v, int): return {"t": "int", "v": str(v)}
            if isinstance(v, float): return {"t": "float", "v": v.hex()}
            return {"t": "str", "v": v}
        files = json.load(open(sys.argv[1]))["files"]
        out = {name: node(entry["value"]) for name, entry in files.items() if "value" in entry}
        composer = files["composer"]
        out["composer/model"] = node(composer["model"])
        out["composer/optimizers"] = node(composer["optimizers"])
        out["composer/timestamp"] = {k: scalar(v) for k, v in composer["timestamp"].items()}
        out["composer/scalars"] = {k: composer[k] for k in ["run_name", "rank_zero_seed", "top_keys", "state_keys", "weights_only_keys"]}
        print(json.dumps(out))
        """

    private static func canonicalExpected() throws -> [String: Any] {
        let output = try runPython(canonicalScript, [Fixtures.path("expected.json")])
        return try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    }

    /// Records an issue for every way `value` differs from the canonical expected node.
    private static func expectMatches(_ value: StateValue, _ expected: Any?, at path: String) {
        guard let node = expected as? [String: Any], let type = node["t"] as? String else {
            Issue.record("\(path): no expected node")
            return
        }
        switch (type, value) {
        case ("tensor", .tensor(let tensor)):
            #expect(tensor.dtype.rawValue == node["dtype"] as? String, "\(path): dtype")
            #expect(tensor.shape == (node["shape"] as? [Any])?.compactMap(jsonInt), "\(path): shape")
            let bytes = tensor.bytes
            #expect(sha256Hex(bytes) == node["sha256"] as? String, "\(path): SHA-256 of the bytes")
            if let hex = node["hex"] as? String { #expect(hexString(bytes) == hex, "\(path): bytes") }
        case ("dict", .dict(let dict)):
            let items = node["items"] as? [[Any]] ?? []
            #expect(dict.count == items.count, "\(path): \(dict.count) entries, expected \(items.count)")
            for (index, (key, element)) in dict.enumerated() where index < items.count {
                let expectedKey = items[index][0] as? [String: Any]
                let keyText = expectedKey?["v"] as? String
                switch key {
                case .string(let name): #expect(expectedKey?["t"] as? String == "str" && keyText == name, "\(path): key \(index) is \"\(name)\"")
                case .int(let number): #expect(expectedKey?["t"] as? String == "int" && keyText == String(number), "\(path): key \(index) is \(number)")
                }
                expectMatches(element, items[index][1], at: path + "/" + key.description)
            }
        case ("list", .list(let elements)), ("tuple", .tuple(let elements)):
            let items = node["items"] as? [Any] ?? []
            #expect(elements.count == items.count, "\(path): \(elements.count) elements, expected \(items.count)")
            for (index, element) in elements.enumerated() where index < items.count {
                expectMatches(element, items[index], at: path + "/\(index)")
            }
        case ("none", .none): break
        case ("bool", .bool(let flag)): #expect(node["v"] as? Bool == flag, "\(path)")
        case ("int", .int(let integer)): #expect(node["v"] as? String == String(integer), "\(path)")
        case ("float", .float(let number)):
            #expect(Double(node["v"] as? String ?? "") == number, "\(path): \(number) vs \(node["v"] ?? "")")
        case ("str", .string(let text)): #expect(node["v"] as? String == text, "\(path)")
        default:
            Issue.record("\(path): a \(value.kindName), expected a \(type)")
        }
    }

    @Test(arguments: ["torch/all_dtypes.pt", "torch/views_and_sharing.pt", "torch/nested_python_values.pt"])
    func torchFixtureLoadsWithTheExpectedValues(_ fixture: String) throws {
        let expected = try Self.canonicalExpected()
        let file = try CheckpointFile.open(Fixtures.path(fixture))
        #expect(file.kind == .torchZip)
        #expect(file.formatName == "torch")
        #expect(file.hasChecksums)
        try file.verify()
        Self.expectMatches(file.tree, expected[fixture], at: fixture)
    }

    @Test func viewsStayInTheMappingWhenContiguousAndShareTheirStorage() throws {
        let tree = try CheckpointFile.open(Fixtures.path("torch/views_and_sharing.pt")).tree
        func tensor(_ name: String) throws -> Tensor { try #require(tree[path: name]?.tensorValue) }
        func address(_ name: String) throws -> Int {
            try tensor(name).withUnsafeBytes { Int(bitPattern: $0.baseAddress) }
        }
        for name in ["base", "row_slice", "shared_a", "shared_b", "scalar"] {
            #expect(try tensor(name).storage == .mapped, "\(name) is a contiguous view: zero-copy")
        }
        for name in ["transposed", "col_slice", "strided"] {
            #expect(try tensor(name).storage == .owned, "\(name) is not contiguous: gathered")
        }
        // Views of one storage point into the same mapped bytes.
        #expect(try address("row_slice") - address("base") == 6 * 4)
        #expect(try address("shared_a") - address("base") == 5 * 4)
        #expect(try address("shared_b") - address("base") == 8 * 4)
    }

    @Test(arguments: [
        "composer/ep1-ba4-rank0.pt", "composer/ep1-ba4-rank0", "composer/fixture-run/ep001-ba000004-ws1.pt",
        "composer/weights-ep1-ba4.pt",
    ])
    func composerFixtureLoadsWithTheExpectedValues(_ fixture: String) throws {
        let expected = try Self.canonicalExpected()
        let scalars = try #require(expected["composer/scalars"] as? [String: Any])
        let file = try CheckpointFile.open(Fixtures.path(fixture))
        #expect(file.formatName == "torch")
        try file.verify()
        let root = try #require(file.tree.dictValue)
        let stateDict = try #require(root["state"]?.dictValue)
        Self.expectMatches(try #require(stateDict["model"]), expected["composer/model"], at: "\(fixture): model")
        let weightsOnly = fixture.contains("weights")
        if weightsOnly {
            #expect(root.keys.map(\.description) == ["state"])
            #expect(stateDict.keys.map(\.description) == scalars["weights_only_keys"] as? [String])
            return
        }
        #expect(root.keys.map(\.description) == scalars["top_keys"] as? [String])
        #expect(stateDict.keys.map(\.description) == scalars["state_keys"] as? [String])
        Self.expectMatches(try #require(stateDict["optimizers"]), expected["composer/optimizers"], at: "\(fixture): optimizers")

        let state = try TrainingState(tree: file.tree)
        #expect(state.runName == scalars["run_name"] as? String)
        #expect(state.rankZeroSeed == jsonInt(scalars["rank_zero_seed"]))
        let timestamp = try #require(expected["composer/timestamp"] as? [String: [String: Any]])
        let fields = state.timestamp.composerTree
        #expect(fields.count == 14)
        #expect(timestamp.count == 14)
        for (name, value) in timestamp {
            let actual = try #require(fields[name], "timestamp field \(name)")
            if value["t"] as? String == "int" {
                #expect(actual.intValue.map(String.init) == value["v"] as? String, "timestamp \(name)")
            } else {
                // A float number of seconds in expected.json; a timedelta (whole microseconds) in the file.
                let seconds = try #require(Double(value["v"] as? String ?? ""))
                #expect(actual.durationValue == .microseconds(Int64((seconds * 1e6).rounded())), "timestamp \(name)")
            }
        }
        // The rng entry as Composer writes it: Python's state a tuple, numpy's a tuple whose key
        // array is read as a uint32 tensor, torch's a uint8 tensor.
        let rng = try #require(state.rng.first?.dictValue)
        #expect(state.rng.count == 1)
        guard case .tuple(let python)? = rng["python"], python.count == 3, case .tuple(let words) = python[1] else {
            Issue.record("rng/python is not (version, tuple, gauss)")
            return
        }
        #expect(python[0] == 3)
        #expect(words.count == 625)
        #expect(words.first == .int(BigInt(2_147_483_648)))
        #expect(python[2] == .none)
        guard case .tuple(let numpy)? = rng["numpy"], numpy.count == 5 else {
            Issue.record("rng/numpy is not numpy's legacy state tuple")
            return
        }
        #expect(numpy[0] == "MT19937")
        #expect(numpy[1].tensorValue?.dtype == .uint32)
        #expect(numpy[1].tensorValue?.shape == [624])
        #expect(numpy[2] == 624)
        #expect(numpy[4] == .float(0))
        #expect(rng["torch"]?.tensorValue?.dtype == .uint8)
        #expect(rng["torch"]?.tensorValue?.shape == [5056])
        #expect(stateDict["metadata"]?[path: "torch_version"] == "2.7.0+cu126")
    }

    @Test func maliciousGlobalIsRefusedBeforeAnythingRuns() throws {
        let marker = FileManager.default.currentDirectoryPath + "/pwned-marker"
        #expect(!fileExists(marker))
        let error = expectCheckpointError(.disallowedGlobal, messageContains: ["posix.system", "refused"]) {
            _ = try CheckpointFile.open(Fixtures.path("torch/malicious_global.pt"))
        }
        #expect(error?.path == Fixtures.path("torch/malicious_global.pt"))
        #expect(error?.offset != nil)
        #expect(!fileExists(marker), "the pickle's command ran")
        expectCheckpointError(.disallowedGlobal, messageContains: ["posix.system"]) {
            _ = try loadCheckpoint(Fixtures.path("torch/malicious_global.pt"))
        }
    }

    @Test func legacyFormatGetsAClearError() throws {
        expectCheckpointError(.unsupportedFormat, messageContains: ["pre-1.6 legacy format", "torch.save"]) {
            _ = try CheckpointFile.open(Fixtures.path("torch/legacy_format.pt"))
        }
    }
}
