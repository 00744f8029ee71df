import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The DCP folders this library writes, read by real PyTorch: `dcp_to_torch_save` (which
/// rebuilds the nested state dict from `planner_data`) and `torch.distributed.checkpoint.load`
/// into a state dict of the same layout whose optimizer state is keyed by integers (as torch
/// keys it), each in one process, from a folder written by one process and by three ranks.
///
/// Runs only when `CKPT_TORCH_PYTHON` names a Python with torch, as ``TorchPyTorchInteropTests``.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["CKPT_TORCH_PYTHON"] != nil, "set CKPT_TORCH_PYTHON to a Python with torch"))
struct DCPTorchInteropTests {
    /// Prints, per folder, every tensor's dtype, shape and SHA-256 by flattened path as
    /// `dcp_to_torch_save` gives it, after checking that `dcp.load` gives the same, and a few
    /// values.
    static let script = """
        import hashlib, json, os, sys, tempfile, warnings
        warnings.filterwarnings("ignore")
        import torch
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
        def escape(key):
            return str(key).replace("\\\\", "\\\\\\\\").replace("/", "\\\\/")
        def walk(value, path, out):
            if isinstance(value, torch.Tensor):
                out[path] = [str(value.dtype).replace("torch.", ""), list(value.shape), hashlib.sha256(value.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()]
            elif isinstance(value, dict):
                for key, item in value.items():
                    walk(item, escape(key) if path is None else path + "/" + escape(key), out)
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, str(index) if path is None else path + "/" + str(index), out)
        def template(value):
            # Tensors to fill, values to replace, and integer keys where the keys are digits.
            if isinstance(value, torch.Tensor):
                return torch.zeros_like(value)
            if isinstance(value, dict):
                return {int(k) if isinstance(k, str) and k.isdigit() else k: template(v) for k, v in value.items()}
            if isinstance(value, list):
                return [template(v) for v in value]
            return None
        result = {}
        for folder in sys.argv[1:]:
            pt = os.path.join(tempfile.mkdtemp(), "whole.pt")
            dcp_to_torch_save(folder, pt)
            whole = torch.load(pt, weights_only=False)
            seen = {}
            walk(whole, None, seen)
            target = template(whole)
            dcp.load(target, checkpoint_id=folder)
            loaded = {}
            walk(target, None, loaded)
            assert loaded == seen, sorted(set(loaded.items()) ^ set(seen.items()))[:5]
            assert 0 in target["state"]["optimizers"]["AdamW"]["state"], "integer keys match"
            state = whole["state"]
            values = {"run_name": state["run_name"], "lr": state["optimizers"]["AdamW"]["param_groups"][0]["lr"],
                      "betas": list(state["optimizers"]["AdamW"]["param_groups"][0]["betas"]), "has_scaler": "scaler" in state,
                      "big": str(state["big"]), "layers_1": state["layers"][1], "total_wct": whole["state"]["timestamp"]["Timestamp"]["total_wct"].total_seconds()}
            result[folder] = {"tensors": seen, "values": values}
        print(json.dumps(result))
        """

    @Test func torchReadsWhatWeWriteFromOneAndFromThreeRanks() throws {
        try withTemporaryFolder { folder in
            var state = dcpTestState()
            state.extra["dtypes"] = RandomTree.everyDType(seed: 5)
            let tree = state.tree
            let single = try saveCheckpoint(state, filename: folder + "/single", format: .distributedCheckpoint)[0]
            _ = try DCPWriteTests.saveSplit(tree, worldSize: 3, folder: folder + "/three")
            let python = ProcessInfo.processInfo.environment["CKPT_TORCH_PYTHON"] ?? "python3"
            let run = try runTool([python, "-c", Self.script, single, folder + "/three"])
            #expect(run.status == 0, "\(run.stderr.suffix(3000))")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout)) as? [String: [String: Any]])
            let expected = dcpRoundTripped(tree)
            for path in [single, folder + "/three"] {
                let entry = try #require(report[path], "torch did not read \(path)")
                let seen = try #require(entry["tensors"] as? [String: [Any]])
                let tensors = expected.tensors.filter { !$0.path.hasPrefix("rng/0/numpy") }
                #expect(seen.count == tensors.count, "\(path): torch sees \(seen.count) tensors, Swift \(tensors.count)")
                for (tensorPath, tensor) in tensors {
                    let got = try #require(seen[tensorPath], "\(path): torch has no tensor at \(tensorPath)")
                    #expect(got[0] as? String == tensor.dtype.rawValue, "\(path): \(tensorPath)")
                    #expect((got[1] as? [Any])?.compactMap(jsonInt) == tensor.shape, "\(path): \(tensorPath)")
                    #expect(got[2] as? String == sha256Hex(tensor.bytes), "\(path): bytes of \(tensorPath)")
                }
                let values = try #require(entry["values"] as? [String: Any])
                #expect(values["run_name"] as? String == "fixture-run" && values["lr"] as? Double == 0.001)
                #expect(values["betas"] as? [Double] == [0.9, 0.999] && values["has_scaler"] as? Bool == false, "an empty dict is not saved")
                #expect(values["big"] as? String == "1180591620717411303424" && values["layers_1"] as? String == "name")
                #expect(values["total_wct"] as? Double == 1.234)
            }
        }
    }
}
