import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

@Suite struct CommandTests {
    /// A small Composer-layout state with a few dtypes.
    static func sampleState() throws -> TrainingState {
        var state = TrainingState(runName: "cli-run")
        state.model["fc.weight"] = .tensor(try Tensor(shape: [2, 3], scalars: [Float](stride(from: 0, to: 6, by: 1))))
        state.model["fc.bias"] = .tensor(try Tensor(shape: [2], scalars: [Double(0.5), -0.25]))
        state.optimizers["AdamW"] = .dict([
            "state": .dict([0: .dict(["step": .tensor(try Tensor(shape: [], scalars: [Float(3)]))])]),
            "param_groups": .list([.dict(["lr": 0.001, "params": .list([0, 1])])]),
        ])
        state.timestamp = Timestamp(epoch: 2, batch: 40, sample: 640, totalWct: .milliseconds(1500))
        state.rng = [.dict(["seed": 42])]
        return state
    }

    @Test func inspectJSONListsFormatRunNameTimestampAndTensors() throws {
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(try Self.sampleState(), filename: folder + "/a.safetensors")[0]
            let run = CLI.run(["inspect", path, "--json"])
            #expect(run.status == 0, "\(run.stderr)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            #expect(object["format"] as? String == "native")
            #expect(object["run_name"] as? String == "cli-run")
            let timestamp = try #require(object["timestamp"] as? [String: Any])
            #expect(timestamp["epoch"] as? Int == 2)
            #expect(timestamp["batch"] as? Int == 40)
            #expect(timestamp["total_wct"] as? Double == 1.5)
            let tensors = try #require(object["tensors"] as? [[String: Any]])
            let byPath = Dictionary(uniqueKeysWithValues: tensors.map { ($0["path"] as! String, $0) })
            #expect(byPath["state/model/fc.weight"]?["dtype"] as? String == "float32")
            #expect(byPath["state/model/fc.weight"]?["shape"] as? [Int] == [2, 3])
            #expect(byPath["state/model/fc.weight"]?["bytes"] as? Int == 24)
            #expect(byPath["state/model/fc.bias"]?["dtype"] as? String == "float64")
            #expect(byPath["state/optimizers/AdamW/state/0/step"]?["shape"] as? [Int] == [])
        }
    }

    /// A template variable with no value in IN (here a plain safetensors file with no run name)
    /// is refused before anything is written, instead of writing the hidden file `out/.pt`.
    @Test func convertRefusesARunNameTheInputDoesNotHave() throws {
        try withTemporaryFolder { folder in
            let output = folder + "/out/{run_name}.pt"
            let run = try CLI.runProcess(["convert", Fixtures.path("safetensors/all_dtypes.safetensors"), output])
            #expect(run.status == 1)
            #expect(run.stderr.contains("{run_name}") && run.stderr.contains("expands to nothing"), "\(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: folder + "/out/.pt"))
            #expect((try? FileManager.default.contentsOfDirectory(atPath: folder + "/out"))?.isEmpty ?? true)
        }
    }

    /// `--hashes` gives the SHA-256 that expected.json records for the safetensors fixture.
    @Test func inspectHashesMatchTheFixtureDescription() throws {
        let fixture = Fixtures.path("safetensors/all_dtypes.safetensors")
        let run = CLI.run(["inspect", fixture, "--json", "--hashes"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let tensors = try #require(object["tensors"] as? [[String: Any]])

        let expectedData = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("expected.json")))
        let expected = try #require(try JSONSerialization.jsonObject(with: expectedData) as? [String: Any])
        let files = try #require(expected["files"] as? [String: Any])
        let entry = try #require(files["safetensors/all_dtypes.safetensors"] as? [String: Any])
        let value = try #require(entry["value"] as? [String: Any])
        let pairs = try #require(value["dict"] as? [[Any]])
        #expect(tensors.count == pairs.count)
        for pair in pairs {
            let name = try #require(pair[0] as? String)
            let description = try #require((pair[1] as? [String: Any])?["tensor"] as? [String: Any])
            let row = try #require(tensors.first { $0["path"] as? String == name }, "no row for \(name)")
            #expect(row["sha256"] as? String == description["sha256"] as? String, "sha256 of \(name)")
            #expect(row["dtype"] as? String == description["dtype"] as? String, "dtype of \(name)")
            #expect(row["shape"] as? [Int] == description["shape"] as? [Int], "shape of \(name)")
        }
    }

    @Test func inspectTextShowsATableAndTotals() throws {
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(try Self.sampleState(), filename: folder + "/a.safetensors")[0]
            let run = CLI.run(["inspect", path])
            #expect(run.status == 0)
            #expect(run.stdout.contains("format:    native"))
            #expect(run.stdout.contains("run name:  cli-run"))
            let row = run.stdout.split(separator: "\n").first { $0.hasPrefix("state/model/fc.weight ") }
            #expect(row?.split(separator: " ") == ["state/model/fc.weight", "float32", "[2,", "3]", "24"])
            #expect(run.stdout.contains("total: 3 tensors, 44 B of tensor data"))
        }
    }

    @Test func verifyPassesAnIntactFileAndNamesTheDamagedTensor() throws {
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(try Self.sampleState(), filename: folder + "/a.safetensors")[0]
            let intact = CLI.run(["verify", path])
            #expect(intact.status == 0)
            #expect(intact.stdout.hasPrefix("ok: "))

            // Flip the last byte of the file: the last tensor in the data buffer.
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count - 1] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: path))
            let lastTensor = try CheckpointFile.open(path)  // opens: only the header is read
            let damaged = CLI.run(["verify", path])
            #expect(damaged.status == 1)
            #expect(damaged.stderr.contains("is corrupt"))
            let names = lastTensor.tree.tensors.map(\.path)
            #expect(names.contains { damaged.stderr.contains("\"\($0)\"") }, "\(damaged.stderr)")
        }
    }

    @Test func verifyRefusesMalformedFixtures() throws {
        for name in ["truncated", "huge_header_length", "overlapping"] {
            let run = CLI.run(["verify", Fixtures.path("safetensors/\(name).safetensors")])
            #expect(run.status == 1, "\(name)")
            #expect(run.stderr.contains("\(name).safetensors:"), "\(name): \(run.stderr)")
        }
    }

    @Test func convertFillsTheTemplateFromTheInputAndPrintsThePath() throws {
        try withTemporaryFolder { folder in
            let state = try Self.sampleState()
            let input = try saveCheckpoint(state, filename: folder + "/in.safetensors")[0]
            let run = CLI.run(["convert", input, folder + "/out/{run_name}/ep{epoch:03d}-ba{batch}-rank{rank}.safetensors"])
            #expect(run.status == 0, "\(run.stderr)")
            let expectedPath = folder + "/out/cli-run/ep002-ba40-rank0.safetensors"
            #expect(run.stdout == expectedPath + "\n")
            #expect(try loadCheckpoint(expectedPath) == state)
        }
    }

    @Test func convertWeightsOnlyAndIgnoreKeys() throws {
        try withTemporaryFolder { folder in
            let input = try saveCheckpoint(try Self.sampleState(), filename: folder + "/in.safetensors")[0]
            let output = folder + "/weights.safetensors"
            let run = CLI.run(["convert", input, output, "--weights-only", "--ignore-keys", "state/model/*.bias"])
            #expect(run.status == 0, "\(run.stderr)")
            let tree = try CheckpointFile.open(output).tree
            #expect(tree.dictValue?.keys.map(\.description) == ["state"])
            #expect(tree.dictValue?["state"]?.dictValue?.keys.map(\.description) == ["model", "integrations", "metadata"])
            #expect(tree.tensors.map(\.path) == ["state/model/fc.weight"])
        }
    }

    @Test func convertPlainSafetensorsKeepsTensorsAtTheRoot() throws {
        try withTemporaryFolder { folder in
            let fixture = Fixtures.path("safetensors/all_dtypes.safetensors")
            let output = folder + "/native.safetensors"
            let run = CLI.run(["convert", fixture, output])
            #expect(run.status == 0, "\(run.stderr)")
            let original = try CheckpointFile.open(fixture)
            let converted = try CheckpointFile.open(output)
            #expect(converted.isNative)
            try converted.verify()
            #expect(converted.tree == original.tree)
            #expect(converted.tree.dictValue?["float32"] != nil)
        }
    }

    @Test func convertRefusesABadTemplateBeforeWritingAnything() throws {
        try withTemporaryFolder { folder in
            let input = try saveCheckpoint(try Self.sampleState(), filename: folder + "/in.safetensors")[0]
            let run = CLI.run(["convert", input, folder + "/out-{nope}.safetensors.zst"])
            #expect(run.status == 1)
            #expect(run.stderr.contains("nope"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["in.safetensors"])
        }
    }

    /// Inspect shows the compression (and the tar member) of a file.
    @Test func convertWritesACompressedTarThatInspectDescribes() throws {
        try withTemporaryFolder { folder in
            let input = try saveCheckpoint(try Self.sampleState(), filename: folder + "/in.safetensors")[0]
            let convert = CLI.run(["convert", input, folder + "/out.tar.zst"])
            #expect(convert.status == 0, "\(convert.stderr)")
            let json = CLI.run(["inspect", folder + "/out.tar.zst", "--json"])
            #expect(json.status == 0, "\(json.stderr)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(object["format"] as? String == "native")
            #expect(object["compression"] as? String == "zstd")
            #expect(object["tar_member"] as? String == "checkpoint.safetensors")
            let text = CLI.run(["inspect", folder + "/out.tar.zst"])
            #expect(text.stdout.contains("compress:  zstd"))
            #expect(text.stdout.contains("container: tar, member checkpoint.safetensors"))
            #expect(CLI.run(["inspect", input]).stdout.contains("compress:  none"))
        }
    }

    @Test func benchReportsEveryStepForTheGPT2ShapedState() throws {
        let run = CLI.run(["bench", "--scale", "0.01", "--repeat", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(object["tensor_count"] as? Int == 584)
        for key in ["raw_write_fsync_seconds", "save_seconds", "open_seconds", "read_verify_seconds", "save_vs_raw"] {
            #expect((object[key] as? Double ?? 0) > 0, "\(key)")
        }
    }

    @Test func unknownSubcommandIsAUsageError() throws {
        let run = try CLI.runProcess(["frobnicate"])
        #expect(run.status == 64)
    }

    @Test func decompressionLimitsCanBeRaisedFromTheCommandLine() throws {
        try withTemporaryFolder { folder in
            // 96 MiB of zeros expand ~30000-fold: past the default limit of 1000.
            let zeros = try Tensor(dtype: .float32, shape: [24 << 20]) { _ in }
            let path = try saveCheckpoint(TrainingState(model: ["w": .tensor(zeros)]), filename: folder + "/zeros.safetensors.zst")[0]
            let refused = CLI.run(["verify", path])
            #expect(refused.status == 1 && refused.stderr.contains("--max-expansion"), "\(refused.stderr)")
            let raised = CLI.run(["verify", "--max-expansion", "1000000", path])
            #expect(raised.status == 0, "\(raised.stderr)")
            let inspected = CLI.run(["inspect", "--max-expansion", "1000000", "--json", path])
            #expect(inspected.status == 0 && inspected.stdout.contains("\"state/model/w\""), "\(inspected.stderr)")
            let converted = CLI.run(["convert", "--max-expansion", "1000000", path, folder + "/plain.safetensors"])
            #expect(converted.status == 0, "\(converted.stderr)")
            let tooSmall = CLI.run(["verify", "--max-expansion", "1000000", "--max-decompressed-bytes", "1000", path])
            #expect(tooSmall.status == 1 && tooSmall.stderr.contains("--max-decompressed-bytes"), "\(tooSmall.stderr)")
        }
    }
}
