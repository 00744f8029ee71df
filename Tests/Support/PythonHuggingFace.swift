import Checkpointing
public import Foundation
import Testing

/// Python's `safetensors` as the reference reader of the Hugging Face folders this library
/// writes: every shard the index names is read by `safetensors` (and must say
/// `{"format": "pt"}`, which transformers checks), and the index is held against the shards as
/// Hugging Face's loaders use it.
public enum PythonHuggingFace {
    /// For each index path: `problems` (empty when sound) and every tensor's SHA-256 as read.
    public static let script = """
        import hashlib, json, os, sys
        import safetensors
        out = {}
        for index_path in sys.argv[1:]:
            problems, hashes = [], {}
            try:
                folder = os.path.dirname(index_path)
                index = json.load(open(index_path))
                weight_map = index["weight_map"]
                total = 0
                for shard in sorted(set(weight_map.values())):
                    with open(os.path.join(folder, shard), "rb") as f:
                        data = f.read()
                    with safetensors.safe_open(os.path.join(folder, shard), framework="numpy") as f:
                        if (f.metadata() or {}).get("format") != "pt":
                            problems.append(shard + ": __metadata__ format is not pt")
                    for name, info in safetensors.deserialize(data):
                        if weight_map.get(name) != shard:
                            problems.append(name + " is in " + shard + " but the index says " + str(weight_map.get(name)))
                        hashes[name] = hashlib.sha256(bytes(info["data"])).hexdigest()
                        total += len(info["data"])
                for name in weight_map:
                    if name not in hashes:
                        problems.append(name + " is in the index but in no shard")
                if index["metadata"]["total_size"] != total:
                    problems.append("total_size %s, tensors %d" % (index["metadata"]["total_size"], total))
            except Exception as error:
                problems.append("%s: %s" % (type(error).__name__, error))
            out[index_path] = {"problems": problems, "hashes": hashes}
        print(json.dumps(out))
        """

    /// Reads every Hugging Face checkpoint under `folder` that this library opens with Python,
    /// and records an issue for any problem Python finds or any tensor it reads differently.
    public static func crossCheck(folder: String) {
        var expected: [String: [String: String]] = [:]
        let walker = FileManager.default.enumerator(atPath: folder)
        while let relative = walker?.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard name.hasSuffix(HuggingFaceSharded.indexSuffix), !name.hasPrefix(".") else { continue }
            let path = folder + "/" + relative
            guard let file = try? CheckpointFile.open(path), file.huggingFaceShards != nil else { continue }
            // The tree holds the tensors at its root, under their names.
            var hashes: [String: String] = [:]
            for (key, value) in file.tree.dictValue ?? [:] {
                hashes[key.description] = value.tensorValue?.withUnsafeBytes { sha256Hex($0) }
            }
            expected[path] = hashes
        }
        guard !expected.isEmpty else { return }
        do {
            let output = try runPython(script, expected.keys.sorted())
            let seen = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String: Any]]
            for (path, tensors) in expected {
                let problems = seen?[path]?["problems"] as? [String] ?? ["no answer from Python"]
                if !problems.isEmpty { Issue.record("Python finds problems in \(path): \(problems.prefix(5))") }
                if seen?[path]?["hashes"] as? [String: String] != tensors {
                    Issue.record("Python's safetensors reads the shards of \(path) differently from this library")
                }
            }
        } catch {
            Issue.record("Python could not read the Hugging Face checkpoints in \(folder): \(error)")
        }
    }
}
