public import Checkpointing
import CheckpointToolSupport

/// Training states made up for the benchmark and the demo.
public enum SyntheticState {
    /// A GPT-2-small-shaped state: 146 parameter tensors (token and position embeddings and
    /// 12 transformer blocks; 124M parameters at scale 1), each with AdamW's `exp_avg`,
    /// `exp_avg_sq` and `step`: 584 tensors, 1.49 GB.
    ///
    /// `scale` multiplies every tensor's first dimension (at least 1 row), so the tensor count
    /// stays the same while the bytes scale.
    public static func gpt2Small(scale: Double, seed: UInt64 = 0) throws -> TrainingState {
        let hidden = 768
        var shapes: [(String, [Int])] = [("transformer.wte.weight", [50257, hidden]), ("transformer.wpe.weight", [1024, hidden])]
        for block in 0..<12 {
            let prefix = "transformer.h.\(block)."
            shapes += [
                (prefix + "ln_1.weight", [hidden]), (prefix + "ln_1.bias", [hidden]),
                (prefix + "attn.c_attn.weight", [hidden, 3 * hidden]), (prefix + "attn.c_attn.bias", [3 * hidden]),
                (prefix + "attn.c_proj.weight", [hidden, hidden]), (prefix + "attn.c_proj.bias", [hidden]),
                (prefix + "ln_2.weight", [hidden]), (prefix + "ln_2.bias", [hidden]),
                (prefix + "mlp.c_fc.weight", [hidden, 4 * hidden]), (prefix + "mlp.c_fc.bias", [4 * hidden]),
                (prefix + "mlp.c_proj.weight", [4 * hidden, hidden]), (prefix + "mlp.c_proj.bias", [hidden]),
            ]
        }
        var random = SplitMix64(seed: seed)
        var model = StateDict()
        var moments = StateDict()
        for (name, fullShape) in shapes {
            var shape = fullShape
            shape[0] = max(1, Int((Double(shape[0]) * scale).rounded()))
            model[name] = .tensor(try randomFloats(shape: shape, scale: 0.02, random: &random))
            moments[name] = .dict([
                "step": .tensor(try Tensor(shape: [], scalars: [Float(1000)])),
                "exp_avg": .tensor(try randomFloats(shape: shape, scale: 1e-3, random: &random)),
                "exp_avg_sq": .tensor(try randomFloats(shape: shape, scale: 1e-6, random: &random)),
            ])
        }
        let parameterGroup: StateValue = .dict([
            "lr": .float(6e-4), "betas": .tuple([.float(0.9), .float(0.95)]), "eps": .float(1e-8),
            "weight_decay": .float(0.1), "amsgrad": .bool(false),
            "params": .list(shapes.map { .string($0.0) }),
        ])
        return TrainingState(
            model: model,
            optimizers: ["AdamW": .dict(["state": .dict(moments), "param_groups": .list([parameterGroup])])],
            timestamp: Timestamp(
                epoch: 1, batch: 1000, sample: 512_000, token: 524_288_000, batchInEpoch: 0,
                totalWct: .seconds(3600)),
            rankZeroSeed: Int(seed), runName: "gpt2-small-bench",
            metadata: ["precision": "amp_bf16", "world_size": 1],
            rng: [.dict(["python": .int(Int(seed))])])
    }

    /// Floats spread around zero, filled straight into the tensor's memory.
    static func randomFloats(shape: [Int], scale: Float, random: inout SplitMix64) throws -> Tensor {
        var generator = random
        let tensor = try Tensor(dtype: .float32, shape: shape) { bytes in
            let floats = bytes.bindMemory(to: Float.self)
            for index in floats.indices {
                // 24 random bits mapped onto [-scale, scale).
                floats[index] = (Float(generator.next() >> 40) / Float(1 << 23) - 1) * scale
            }
        }
        random = generator
        return tensor
    }
}
