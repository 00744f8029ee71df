import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

/// `ckpt` on float-split files: convert both ways, inspect's ratio per dtype, verify.
@Suite struct FloatSplitCommandTests {
    @Test func convertEncodesAndDecodesToTheSameFile() throws {
        try withTemporaryFolder { folder in
            let plain = try saveCheckpoint(try CommandTests.sampleState(), filename: folder + "/a.safetensors")[0]
            let encode = CLI.run(["convert", plain, folder + "/b.safetensors.fsz"])
            #expect(encode.status == 0, "\(encode.stderr)")
            let decode = CLI.run(["convert", folder + "/b.safetensors.fsz", folder + "/c.safetensors"])
            #expect(decode.status == 0, "\(decode.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/c.safetensors")) == Data(contentsOf: URL(fileURLWithPath: plain)))
            #expect(CLI.run(["verify", folder + "/b.safetensors.fsz"]).status == 0)
        }
    }

    @Test func inspectShowsTheRatioOfEachDType() throws {
        try withTemporaryFolder { folder in
            let path = try saveCheckpoint(try CommandTests.sampleState(), filename: folder + "/a.safetensors.fsz")[0]
            let run = CLI.run(["inspect", path, "--json"])
            #expect(run.status == 0, "\(run.stderr)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            #expect(object["compression"] as? String == "float-split")
            let shares = try #require(object["compression_by_dtype"] as? [[String: Any]])
            let dtypes = shares.map { $0["dtype"] as? String ?? "header" }
            #expect(dtypes == ["header", "float32", "float64"])
            let float32 = try #require(shares.first { $0["dtype"] as? String == "float32" })
            // fc.weight and the optimizer's step: 7 floats, 28 bytes.
            #expect(float32["bytes"] as? Int == 28)
            let text = CLI.run(["inspect", path])
            #expect(text.stdout.contains("compression by dtype:"))
            #expect(text.stdout.contains("float32"))
        }
    }
}
