import CheckpointingTestSupport
import Foundation
import Testing

/// `ckpt inspect`, `verify` and `convert` on PyTorch `.pt` files, both ways (issue 3).
@Suite struct TorchCommandTests {
    @Test func inspectDescribesAComposerCheckpoint() throws {
        let run = CLI.run(["inspect", "--json", "--hashes", Fixtures.path("composer/ep1-ba4-rank0.pt")])
        #expect(run.status == 0, "\(run.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(report["format"] as? String == "torch")
        #expect(report["run_name"] as? String == "fixture-run")
        let timestamp = try #require(report["timestamp"] as? [String: Any])
        #expect(timestamp["batch"] as? Int == 4)
        let tensors = try #require(report["tensors"] as? [[String: Any]])
        let bias = try #require(tensors.first { $0["path"] as? String == "state/model/module.0.bias" })
        #expect(bias["sha256"] as? String == "9556176f12a52948a8af33d4c204a43a1a712dcdef816e0ea55c8222c07e4864")
    }

    @Test func convertGoesBothWaysAndVerifyChecksEveryCRC() throws {
        try withTemporaryFolder { folder in
            let toNative = CLI.run(["convert", Fixtures.path("composer/ep1-ba4-rank0.pt"), folder + "/{run_name}-ba{batch}.safetensors"])
            #expect(toNative.status == 0, "\(toNative.stderr)")
            let native = folder + "/fixture-run-ba4.safetensors"
            #expect(toNative.stdout == native + "\n")
            let toTorch = CLI.run(["convert", native, folder + "/back-ep{epoch}.pt"])
            #expect(toTorch.status == 0, "\(toTorch.stderr)")
            let torch = folder + "/back-ep1.pt"
            let verified = CLI.run(["verify", torch])
            #expect(verified.status == 0, "\(verified.stderr)")
            #expect(verified.stdout.contains("torch"))
            #expect(verified.stdout.contains("checksums match"))

            // One flipped bit in a storage record: verify names the record and fails.
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: torch)))
            let data0 = try #require(bytes.indices.first { index in
                bytes[index..<min(bytes.count, index + 14)].elementsEqual(Array("archive/data/0".utf8))
            })
            // The record's data follows its local header's name and extra field.
            let header = data0 - 30
            let start = data0 + Int(bytes[header + 26]) + Int(bytes[header + 27]) << 8 + Int(bytes[header + 28]) + Int(bytes[header + 29]) << 8
            #expect(start % 64 == 0)
            bytes[start + 3] ^= 0x10
            let damaged = folder + "/damaged.bin"
            try Data(bytes).write(to: URL(fileURLWithPath: damaged))
            let failed = CLI.run(["verify", damaged])
            #expect(failed.status == 1)
            #expect(failed.stderr.contains("data/0"), "\(failed.stderr)")
            #expect(failed.stderr.contains("CRC-32"), "\(failed.stderr)")
        }
    }

    @Test func verifyRefusesTheMaliciousAndLegacyFixtures() throws {
        let malicious = CLI.run(["verify", Fixtures.path("torch/malicious_global.pt")])
        #expect(malicious.status == 1)
        #expect(malicious.stderr.contains("posix.system"))
        let legacy = CLI.run(["inspect", Fixtures.path("torch/legacy_format.pt")])
        #expect(legacy.status == 1)
        #expect(legacy.stderr.contains("legacy"))
    }
}
