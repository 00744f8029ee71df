import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// Native files are valid safetensors files, plain safetensors files read as trees, and damaged
/// or hostile headers are refused with a clear error (the reference reader's rules).
@Suite struct SafetensorsInteropTests {
    // MARK: Swift writes, Python's safetensors reads

    /// Reads each file with `safetensors.deserialize` (raw bytes: numpy has no bf16 or fp8) and
    /// prints, per file, every tensor's dtype, shape and SHA-256, and the metadata.
    private static let describeWithPython = """
        import hashlib, json, sys
        import safetensors
        from safetensors import safe_open
        out = {}
        for path in sys.argv[1:]:
            with open(path, "rb") as f:
                data = f.read()
            tensors = {}
            for name, info in safetensors.deserialize(data):
                tensors[name] = [info["dtype"], list(info["shape"]), hashlib.sha256(bytes(info["data"])).hexdigest()]
            with safe_open(path, framework="numpy") as f:
                metadata = f.metadata()
                keys = sorted(f.keys())
            json.loads(metadata["tree"])
            json.loads(metadata["checksums"])
            out[path] = {"tensors": tensors, "metadata": metadata, "keys": keys}
        print(json.dumps(out))
        """

    @Test func pythonSafetensorsReadsEveryNativeFile() throws {
        var trees = (0..<10).map { RandomTree.make(seed: 0xC0FFEE + UInt64($0)) }
        trees.append(RandomTree.everyDType(seed: 3))
        trees.append(composerLikeState().tree)
        try withTemporaryFolder { folder in
            var expected: [String: StateValue] = [:]
            for (index, tree) in trees.enumerated() {
                let path = try saveCheckpoint(tree: tree, filename: folder + "/tree\(index).safetensors")[0]
                expected[path] = tree
            }
            let output = try runPython(Self.describeWithPython, expected.keys.sorted())
            let report = try #require(
                try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String: Any]])
            #expect(report.count == trees.count)
            for (path, tree) in expected {
                let seen = try #require(report[path], "python did not read \(path)")
                let tensors = try #require(seen["tensors"] as? [String: [Any]])
                let want = tree.tensors
                #expect(tensors.count == want.count, "\(path)")
                #expect(Set(try #require(seen["keys"] as? [String])) == Set(want.map(\.path)))
                for (name, tensor) in want {
                    let got = try #require(tensors[name], "python sees no tensor \"\(name)\" in \(path)")
                    #expect(got[0] as? String == tensor.dtype.safetensorsName, "\(name)")
                    #expect((got[1] as? [Any])?.compactMap(jsonInt) == tensor.shape, "\(name)")
                    #expect(got[2] as? String == sha256Hex(tensor.bytes), "bytes of \(name) differ in \(path)")
                }
                let metadata = try #require(seen["metadata"] as? [String: String])
                #expect(metadata["format"] == "pt")
                #expect(metadata["checkpoint_format"] == "swift-checkpointing")
            }
        }
    }

    // MARK: Python writes, Swift reads

    @Test func pythonWrittenSafetensorsReadsAsAPlainTree() throws {
        let script = """
            import json, sys
            import numpy as np
            from safetensors.numpy import save_file
            rng = np.random.default_rng(5)
            arrays = {
                "f16": rng.standard_normal((2, 3)).astype(np.float16),
                "f32/with slash": rng.standard_normal((4,)).astype(np.float32),
                "f64.é✓": rng.standard_normal((2, 2)).astype(np.float64),
                "i8": rng.integers(-128, 127, (5,), dtype=np.int8),
                "u8": rng.integers(0, 255, (3, 1), dtype=np.uint8),
                "i16": rng.integers(-999, 999, (2,), dtype=np.int16),
                "u16": rng.integers(0, 9999, (2,), dtype=np.uint16),
                "i32": rng.integers(-99999, 99999, (3,), dtype=np.int32),
                "u32": rng.integers(0, 99999, (3,), dtype=np.uint32),
                "i64": rng.integers(-2**40, 2**40, (2,), dtype=np.int64),
                "u64": np.array([2**64 - 1, 0], dtype=np.uint64),
                "bool": np.array([True, False, True]),
                "c64": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex64),
                "scalar": np.array(3.5, dtype=np.float32),
                "empty": np.zeros((3, 0), dtype=np.float32),
            }
            save_file(arrays, sys.argv[1], metadata={"format": "np", "who": "python"})
            print(json.dumps({k: [str(v.dtype), list(v.shape), v.tobytes().hex()] for k, v in arrays.items()}))
            """
        let dtypes: [String: DType] = [
            "float16": .float16, "float32": .float32, "float64": .float64, "int8": .int8, "uint8": .uint8,
            "int16": .int16, "uint16": .uint16, "int32": .int32, "uint32": .uint32, "int64": .int64,
            "uint64": .uint64, "bool": .bool, "complex64": .complex64,
        ]
        try withTemporaryFolder { folder in
            let path = folder + "/from-python.safetensors"
            let output = try runPython(script, [path])
            let arrays = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [Any]])
            let file = try CheckpointFile.open(path)
            #expect(file.kind == .safetensors)
            #expect(!file.isNative)
            #expect(!file.hasChecksums)
            #expect(file.formatName == "safetensors")
            #expect(file.metadata == ["format": "np", "who": "python"])
            try file.verify()  // nothing to verify, nothing to refuse
            let root = try #require(file.tree.dictValue)
            #expect(root.count == arrays.count)
            for (name, array) in arrays {
                // A plain file's names are keys of the root, not paths: "f32/with slash" is one key.
                let tensor = try #require(root[name]?.tensorValue, "no tensor \"\(name)\"")
                #expect(tensor.dtype == dtypes[try #require(array[0] as? String)], "\(name)")
                #expect(tensor.shape == (array[1] as? [Any])?.compactMap(jsonInt), "\(name)")
                #expect(hexString(tensor.bytes) == array[2] as? String, "\(name)")
                #expect(tensor.storage == .mapped)
            }
            #expect(file.tree[path: "f32\\/with slash"]?.tensorValue?.shape == [4])
            // It holds tensors but no training state: loading one as a training state says so.
            expectCheckpointError(.invalidState, messageContains: ["state"]) { _ = try loadCheckpoint(path) }
        }
    }

    @Test func allDTypesFixtureMatchesExpectedJSON() throws {
        let expected = try Fixtures.expected("safetensors/all_dtypes.safetensors")
        #expect(expected["loads"] as? Bool == true)
        let entries = try #require((expected["value"] as? [String: Any])?["dict"] as? [[Any]])
        let file = try CheckpointFile.open(Fixtures.path("safetensors/all_dtypes.safetensors"))
        #expect(file.kind == .safetensors)
        #expect(!file.isNative)
        #expect(file.metadata == (expected["metadata"] as? [String: String]))
        let root = try #require(file.tree.dictValue)
        #expect(root.count == entries.count)
        #expect(entries.count == 12)
        for entry in entries {
            let name = try #require(entry[0] as? String)
            let description = try #require((entry[1] as? [String: Any])?["tensor"] as? [String: Any])
            let tensor = try #require(root[name]?.tensorValue, "the fixture's tensor \"\(name)\" is missing")
            #expect(tensor.dtype.rawValue == description["dtype"] as? String, "\(name)")
            #expect(tensor.shape == (description["shape"] as? [Any])?.compactMap(jsonInt), "\(name)")
            #expect(sha256Hex(tensor.bytes) == description["sha256"] as? String, "\(name)")
            if let hex = description["hex"] as? String {
                #expect(hexString(tensor.bytes) == hex, "\(name)")
            }
        }
    }

    // MARK: Malformed fixtures

    @Test(arguments: [
        ("truncated", "truncated"),
        ("huge_header_length", "claims"),
        ("overlapping", "overlap"),
    ])
    func malformedFixtureIsRefused(name: String, mentions fragment: String) throws {
        let relative = "safetensors/\(name).safetensors"
        #expect(try Fixtures.expected(relative)["loads"] as? Bool == false)
        let path = Fixtures.path(relative)
        let error = expectCheckpointError(.malformed, messageContains: [fragment]) {
            _ = try CheckpointFile.open(path)
        }
        #expect(error?.path == path, "the error names the file")
        expectCheckpointError(.malformed, messageContains: [fragment]) { _ = try loadCheckpoint(path) }
    }

    // MARK: Hostile headers

    @Test(arguments: HostileFile.all)
    func hostileFileIsRefusedWithAClearError(_ hostile: HostileFile) throws {
        try withTemporaryFolder { folder in
            let path = folder + "/hostile.safetensors"
            try writeBytes(hostile.bytes, to: path)
            do {
                let file = try CheckpointFile.open(path)
                Issue.record("opened a hostile file: \(file.tree)")
            } catch let error as CheckpointError {
                #expect(hostile.codes.contains(error.code), "\(error)")
                for fragment in hostile.fragments {
                    #expect(error.message.localizedCaseInsensitiveContains(fragment), "should mention \"\(fragment)\": \(error)")
                }
                #expect(error.path == path, "the error names the file: \(error)")
                #expect(error.message.count < 2_000, "the message is readable, not a dump")
            }
            #expect(throws: CheckpointError.self) { _ = try loadCheckpoint(path) }
        }
    }
}

/// A hand-made file that no reader should accept.
struct HostileFile: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var codes: [CheckpointError.Code]
    var fragments: [String]
    var testDescription: String { name }

    init(_ name: String, _ bytes: [UInt8], _ codes: [CheckpointError.Code] = [.malformed], mentions fragments: [String] = []) {
        self.name = name
        self.bytes = bytes
        self.codes = codes
        self.fragments = fragments
    }

    /// A u64 little-endian length, the header, and the data (the length defaults to the header's).
    static func file(_ header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
        file(Array(header.utf8), data: data, declaredLength: declaredLength)
    }

    static func file(_ header: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
        let length = declaredLength ?? UInt64(header.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + header + data
    }

    /// A native file (the metadata that marks it as this library's) with one `U8 [2]` tensor `a`
    /// and the given tree JSON, checksum table and version. The tree's own checksum is right,
    /// so the reader gets past it to the defect under test.
    static func native(
        tree: String, checksums: String = #"{"a":"0000000000000000"}"#, version: String = "1",
        tensors: String = #""a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#, data: [UInt8] = [1, 2]
    ) -> [UInt8] {
        let metadata: [String: String] = [
            "format": "pt", "checkpoint_format": "swift-checkpointing", "checkpoint_format_version": version,
            "checksum_algorithm": "xxh3-64", "checksums": checksums, "tree": tree,
            "tree_checksum": TensorChecksum.hex(of: tree),
        ]
        let metadataJSON = String(
            decoding: try! JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys]), as: UTF8.self)
        return file("{\"__metadata__\":\(metadataJSON),\(tensors)}", data: data)
    }

    private static let u8 = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#
    private static let treeA = #"{"dict":[{"s":"a","v":{"tensor":"a"}}]}"#

    static let all: [HostileFile] = [
        HostileFile("header longer than the file", file(u8, data: [7], declaredLength: 4096), mentions: ["truncated"]),
        HostileFile("header over 100 MB", file(u8, data: [7], declaredLength: 100_000_001), mentions: ["claims", "limit"]),
        HostileFile("header length 2^64-1", file(u8, data: [7], declaredLength: .max), mentions: ["claims"]),
        HostileFile("not JSON", file("{this is not json}", data: []), mentions: ["JSON"]),
        HostileFile("truncated JSON", file(#"{"a":{"dtype":"U8","#, data: [])),
        HostileFile("invalid UTF-8", file([UInt8(ascii: "{"), UInt8(ascii: "\""), 0xFF, 0xFE, UInt8(ascii: "\""), UInt8(ascii: ":"), UInt8(ascii: "1"), UInt8(ascii: "}")])),
        // Not starting with `{`: the file is not recognised as safetensors at all.
        HostileFile("JSON array", file(#"[{"a": 1}, 2, 3]"#), [.malformed, .unsupportedFormat]),
        HostileFile("JSON string", file(#""just a string""#), [.malformed, .unsupportedFormat]),
        HostileFile("empty file", [], [.malformed, .unsupportedFormat]),
        HostileFile("five bytes", [1, 2, 3, 4, 5], [.malformed, .unsupportedFormat]),
        HostileFile("zero header length", file("", data: [UInt8](repeating: 0, count: 16)), [.malformed, .unsupportedFormat]),
        HostileFile(
            "unknown dtype", file(#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}"#, data: [0]),
            [.unsupportedFormat], mentions: ["Q7"]),
        HostileFile(
            "newer dtype F8_E8M0", file(#"{"a":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[0,1]}}"#, data: [0]),
            [.unsupportedFormat], mentions: ["F8_E8M0"]),
        HostileFile(
            "shape does not match offsets", file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
            mentions: ["8 bytes", "4"]),
        HostileFile(
            "gap between tensors",
            file(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}"#, data: [1, 2, 3]),
            mentions: ["gap"]),
        HostileFile(
            "overlapping tensors",
            file(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#, data: [1, 2, 3]),
            mentions: ["overlap"]),
        HostileFile("trailing bytes", file(u8, data: [1, 2, 3, 4]), mentions: ["trailing"]),
        HostileFile("negative shape", file(#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}"#)),
        HostileFile("fractional shape", file(#"{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}"#, data: [0])),
        HostileFile("boolean shape", file(#"{"a":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}}"#, data: [0])),
        HostileFile(
            "overflowing shape",
            file(#"{"a":{"dtype":"F64","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,0]}}"#),
            mentions: ["too large"]),
        HostileFile(
            "offsets beyond the file", file(#"{"a":{"dtype":"U8","shape":[1000],"data_offsets":[0,1000]}}"#, data: [1, 2, 3, 4]),
            mentions: ["1000"]),
        HostileFile(
            "offsets near 2^64", file(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}}"#, data: [1])),
        HostileFile("end before begin", file(#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}"#, data: [1])),
        HostileFile("three offsets", file(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,1]}}"#, data: [1]), mentions: ["data_offsets"]),
        HostileFile("missing dtype", file(#"{"a":{"shape":[1],"data_offsets":[0,1]}}"#, data: [1])),
        HostileFile("tensor entry not an object", file(#"{"a":5}"#)),
        HostileFile("metadata value not a string", file(#"{"__metadata__":{"n":1},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1])),
        HostileFile("metadata not an object", file(#"{"__metadata__":"x","a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1])),
        HostileFile("native: tree refers to a missing tensor", native(tree: #"{"dict":[{"s":"a","v":{"tensor":"a"}},{"s":"b","v":{"tensor":"b"}}]}"#), mentions: ["\"b\""]),
        HostileFile("native: tensor not in the tree", native(tree: #"{"dict":[]}"#), mentions: ["\"a\"", "tree"]),
        HostileFile("native: tree places a tensor away from its path", native(tree: #"{"list":[{"tensor":"a"}]}"#), mentions: ["places"]),
        HostileFile(
            "native: tree refers to a tensor twice",
            native(
                tree: #"{"dict":[{"i":0,"v":{"tensor":"0"}},{"s":"0","v":{"tensor":"0"}}]}"#,
                checksums: #"{"0":"0000000000000000"}"#,
                tensors: #""0":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#),
            mentions: ["twice"]),
        HostileFile("native: tree is not JSON", native(tree: "{oops"), mentions: ["tree"]),
        HostileFile("native: no tree", native(tree: ""), mentions: ["tree"]),
        HostileFile("native: unknown node kind", native(tree: #"{"pickle":"os.system"}"#), mentions: ["tree"]),
        HostileFile("native: invalid integer", native(tree: #"{"list":[{"int":"12x"},{"tensor":"a"}]}"#), mentions: ["integer"]),
        HostileFile("native: invalid float", native(tree: #"{"list":[{"float":"one"},{"tensor":"a"}]}"#), mentions: ["float"]),
        HostileFile(
            "native: dict entry with both key kinds", native(tree: #"{"dict":[{"s":"a","i":1,"v":{"tensor":"a"}}]}"#),
            mentions: ["key"]),
        HostileFile(
            "native: the same key twice", native(tree: #"{"dict":[{"s":"a","v":{"tensor":"a"}},{"s":"a","v":{"none":null}}]}"#),
            mentions: ["twice"]),
        HostileFile("native: bad duration", native(tree: #"{"list":[{"duration":[1,2,3]},{"tensor":"a"}]}"#), mentions: ["tree"]),
        HostileFile(
            "native: nested 600 deep",
            native(tree: String(repeating: #"{"list":["#, count: 600) + #"{"tensor":"a"}"# + String(repeating: "]}", count: 600)),
            mentions: ["tree"]),
        HostileFile("native: checksum table missing", native(tree: treeA, checksums: "not json"), mentions: ["checksum"]),
        HostileFile("native: checksum for another tensor", native(tree: treeA, checksums: #"{"b":"0000000000000000"}"#), mentions: ["checksum"]),
        HostileFile("native: short checksum", native(tree: treeA, checksums: #"{"a":"00"}"#), mentions: ["checksum"]),
        HostileFile("native: future version", native(tree: treeA, version: "2"), [.unsupportedFormat], mentions: ["version"]),
    ]
}
