import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The Hugging Face folders this library writes, loaded into a real torch module by
/// `huggingface_hub.load_torch_model(strict=True)` (the index, then every shard through
/// `safetensors.torch`), as `transformers` loads a sharded checkpoint.
///
/// Runs only when `CKPT_TORCH_PYTHON` names a Python with `torch` and `huggingface_hub`:
/// `CKPT_TORCH_PYTHON=/path/to/venv/bin/python swift test --filter HFTorchInteropTests`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["CKPT_TORCH_PYTHON"] != nil, "set CKPT_TORCH_PYTHON to a Python with torch"))
struct HFTorchInteropTests {
    /// Builds a module whose buffers have the checkpoint's names, dtypes and shapes (zeros),
    /// loads the folder into it with `load_torch_model(strict=True)`, and prints every
    /// buffer's dtype, shape and SHA-256.
    static let script = """
        import hashlib, json, os, sys, warnings
        import torch, huggingface_hub, safetensors.torch
        warnings.filterwarnings("ignore")
        result = {}
        for folder in sys.argv[1:]:
            index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
            root = torch.nn.Module()
            for shard in sorted(set(index["weight_map"].values())):
                for name, tensor in safetensors.torch.load_file(os.path.join(folder, shard)).items():
                    *path, leaf = name.split(".")
                    module = root
                    for part in path:
                        if part not in module._modules:
                            module.add_module(part, torch.nn.Module())
                        module = module._modules[part]
                    module.register_buffer(leaf, torch.zeros_like(tensor))
            huggingface_hub.load_torch_model(root, folder, strict=True)
            result[folder] = {
                name: [str(t.dtype).replace("torch.", ""), list(t.shape),
                       hashlib.sha256(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()]
                for name, t in root.state_dict().items()}
        print(json.dumps(result))
        """

    @Test func huggingFaceHubLoadsEveryFolderWeWrite() throws {
        try withTemporaryFolder { folder in
            var random = SplitMix64(seed: 99)
            func tensor(_ dtype: DType, _ shape: [Int]) throws -> StateValue {
                let count = shape.reduce(dtype.byteSize, *)
                var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                if dtype == .bool { bytes = bytes.map { $0 & 1 } }
                return .tensor(try Tensor(dtype: dtype, shape: shape, bytes: bytes))
            }
            var state = TrainingState(runName: "interop")
            state.model = [
                "embed.weight": try tensor(.bfloat16, [300, 64]), "layers.0.attn.weight": try tensor(.float32, [64, 64]),
                "layers.0.attn.bias": try tensor(.float16, [64]), "layers.0.norm.weight": try tensor(.float64, [64]),
                "layers.1.attn.weight": try tensor(.float32, [64, 64]), "position_ids": try tensor(.int64, [1, 128]),
                "mask": try tensor(.bool, [128]), "scale": try tensor(.float32, []), "codes": try tensor(.uint8, [7, 3]),
            ]
            var expected: [String: StateValue] = [:]
            let small = try saveCheckpoint(state, filename: folder + "/small", format: .huggingFaceSharded(maxShardSize: 20_000))[0]
            expected[folder + "/small"] = .dict(state.model)
            let fixture = try CheckpointFile.open(Fixtures.path("sharded/hf/bf16"))
            try saveCheckpoint(tree: fixture.tree, filename: folder + "/bf16", format: .huggingFaceSharded(maxShardSize: 40_000))
            expected[folder + "/bf16"] = fixture.tree
            #expect(try CheckpointFile.open(small).huggingFaceShards?.shards.count ?? 0 > 2)

            let python = ProcessInfo.processInfo.environment["CKPT_TORCH_PYTHON"] ?? "python3"
            let run = try runTool([python, "-c", Self.script] + expected.keys.sorted())
            #expect(run.status == 0, "\(run.stderr.suffix(3000))")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout)) as? [String: [String: [Any]]])
            for (path, tree) in expected {
                let loaded = try #require(report[path], "torch did not load \(path)")
                let tensors = try #require(tree.dictValue)
                #expect(loaded.count == tensors.count, "\(path)")
                for (key, value) in tensors {
                    let tensor = try #require(value.tensorValue)
                    let seen = try #require(loaded[key.description], "torch has no \(key) in \(path)")
                    #expect(seen[0] as? String == tensor.dtype.rawValue, "\(key)")
                    #expect((seen[1] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } == tensor.shape, "\(key)")
                    #expect(seen[2] as? String == tensor.withUnsafeBytes { sha256Hex($0) }, "bytes of \(key) in \(path)")
                }
            }
        }
    }
}
