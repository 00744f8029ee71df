import CheckpointingTestSupport
import Foundation
import Testing

@testable import Checkpointing

/// The `.pt` files this library writes, loaded by real PyTorch (`torch.load(weights_only=True)`,
/// also memory-mapped and with torch's own offset arithmetic) and resumed by real Composer.
///
/// PyTorch is far too large to install for every test run, so these run only when
/// `CKPT_TORCH_PYTHON` names a Python that has `torch` (and `composer` for the resume test):
/// `CKPT_TORCH_PYTHON=/path/to/venv/bin/python swift test --filter TorchPyTorchInteropTests`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["CKPT_TORCH_PYTHON"] != nil, "set CKPT_TORCH_PYTHON to a Python with torch"))
struct TorchPyTorchInteropTests {
    static var python: String { ProcessInfo.processInfo.environment["CKPT_TORCH_PYTHON"] ?? "python3" }

    /// Loads each file three ways and prints, per file, every tensor's dtype, shape and SHA-256
    /// by flattened path (numpy arrays included).
    static let loadScript = """
        import datetime, hashlib, json, sys, warnings
        import numpy, torch, torch.utils.serialization
        warnings.filterwarnings("ignore")
        extras = [datetime.timedelta, numpy._core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, numpy.dtypes.UInt32DType]
        def escape(key):
            return str(key).replace("\\\\", "\\\\\\\\").replace("/", "\\\\/")
        def walk(value, path, out):
            if isinstance(value, torch.Tensor):
                out[path] = [str(value.dtype).replace("torch.", ""), list(value.shape), hashlib.sha256(value.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()]
            elif isinstance(value, numpy.ndarray):
                out[path] = [str(value.dtype), list(value.shape), hashlib.sha256(value.tobytes()).hexdigest()]
            elif isinstance(value, dict):
                for key, item in value.items():
                    walk(item, escape(key) if path is None else path + "/" + escape(key), out)
            elif isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    walk(item, str(index) if path is None else path + "/" + str(index), out)
        result = {}
        for path in sys.argv[1:]:
            seen = []
            # The third way computes each storage's offset from miniz's layout rules instead of
            # reading local headers: our zip layout must match torch's byte for byte. (Not for
            # the file with zip64 forced below 4 GiB, which torch itself never writes.)
            ways = [(False, False), (True, False)] + ([] if "zip64" in path else [(True, True)])
            for mmap, offsets in ways:
                torch.utils.serialization.config.load.calculate_storage_offsets = offsets
                with torch.serialization.safe_globals(extras):
                    tree = torch.load(path, weights_only=True, mmap=mmap)
                out = {}
                walk(tree, None, out)
                seen.append(out)
            assert all(other == seen[0] for other in seen), path
            result[path] = seen[0]
        print(json.dumps(result))
        """

    private static func run(_ script: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        let output = Pipe()
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("torch-interop-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            Issue.record("\(python) failed: \(String(decoding: try Data(contentsOf: errors), as: UTF8.self).suffix(3000))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    @Test func torchLoadsEveryFileWeWrite() throws {
        try withTemporaryFolder { folder in
            var trees: [String: StateValue] = [
                "dtypes.pt": RandomTree.everyDType(seed: 11),
                "composer.pt": try CheckpointFile.open(Fixtures.path("composer/ep1-ba4-rank0.pt")).tree,
                "views.pt": try CheckpointFile.open(Fixtures.path("torch/views_and_sharing.pt")).tree,
                "composer-like.pt": composerLikeState().tree,
            ]
            for seed in 0..<4 { trees["random\(seed).pt"] = torchRepresentable(RandomTree.make(seed: 0x5EED + UInt64(seed))) }
            for (name, tree) in trees { try saveCheckpoint(tree: tree, filename: folder + "/" + name) }
            // The zip64 forms, on a small file.
            let layout = try TorchFormat.layout(trees["dtypes.pt"]!)
            var forced = layout
            forced.zip = ZipPlan(layout.zip.records.map { (String(decoding: $0.name, as: UTF8.self), $0.size) }, zip64Threshold: 0)
            let file = try AtomicFileWriter(path: folder + "/zip64.pt")
            try TorchFormat.write(forced, to: file)
            try file.commit()
            trees["zip64.pt"] = trees["dtypes.pt"]

            let output = try Self.run(Self.loadScript, trees.keys.sorted().map { folder + "/" + $0 })
            let report = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [String: [Any]]])
            for (name, tree) in trees {
                let seen = try #require(report[folder + "/" + name], "torch did not load \(name)")
                let tensors = tree.tensors
                #expect(seen.count == tensors.count, "\(name): torch sees \(seen.count) tensors, Swift \(tensors.count)")
                for (path, tensor) in tensors {
                    let entry = try #require(seen[path], "\(name): torch has no tensor at \(path)")
                    #expect((entry[1] as? [Any])?.compactMap(jsonInt) == tensor.shape, "\(name): \(path)")
                    #expect(entry[2] as? String == sha256Hex(tensor.bytes), "\(name): bytes of \(path)")
                }
            }
        }
    }

    @Test func composerResumesFromOurFile() throws {
        try withTemporaryFolder { folder in
            // Composer's fixture, through the native format, back to .pt: Composer must resume from it.
            let native = try saveCheckpoint(
                tree: CheckpointFile.open(Fixtures.path("composer/ep1-ba4-rank0.pt")).tree, filename: folder + "/state.safetensors")[0]
            let path = try saveCheckpoint(tree: CheckpointFile.open(native).tree, filename: folder + "/resume.pt")[0]
            let script = """
                import hashlib, sys, warnings
                warnings.filterwarnings("ignore")
                import torch
                from torch.utils.data import DataLoader, TensorDataset
                from composer import Trainer
                from composer.models import ComposerClassifier
                torch.manual_seed(0)
                net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
                model = ComposerClassifier(net, num_classes=3)
                data = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 3, (64,))), batch_size=16)
                trainer = Trainer(model=model, train_dataloader=data, optimizers=torch.optim.AdamW(model.parameters(), lr=1e-3),
                                  max_duration="2ep", load_path=sys.argv[1], progress_bar=False, log_to_console=False, run_name="fixture-run")
                t = trainer.state.timestamp
                bias = hashlib.sha256(trainer.state.model.module[0].bias.detach().numpy().tobytes()).hexdigest()
                trainer.fit()
                print(t.epoch.value, t.batch.value, t.sample.value, t.total_wct.total_seconds(), bias, trainer.state.timestamp.batch.value)
                """
            let words = try Self.run(script, [path]).split(whereSeparator: \.isWhitespace).map(String.init)
            #expect(words == ["1", "4", "64", "0.024579", "9556176f12a52948a8af33d4c204a43a1a712dcdef816e0ea55c8222c07e4864", "8"])
        }
    }
}
