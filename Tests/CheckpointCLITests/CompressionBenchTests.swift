import Foundation
import Testing

/// `ckpt bench compression` and `ckpt bench fsz`: our compressed saves set beside Composer's
/// pipe and the tools.
@Suite struct CompressionBenchTests {
    @Test func benchSetsOurZstdSaveBesideComposersPipeAndTheTool() throws {
        let run = CLI.run(["bench", "compression", "zst", "--scale", "0.005", "--repeat", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let rows = try #require(object["rows"] as? [[String: Any]])
        #expect(rows.compactMap { $0["method"] as? String } == ["ours: save .pt.zst", "Composer: bytes | zstd", "zstd -T0 FILE"])
        let uncompressed = try #require(object["uncompressed_bytes"] as? Int)
        for row in rows {
            #expect((row["seconds"] as? Double ?? 0) > 0)
            let compressed = row["compressed_bytes"] as? Int ?? 0
            #expect(compressed > 0 && compressed < uncompressed, "weights compress a little: \(row)")
        }
        #expect((object["opens"] as? [[String: Any]])?.first?["codec"] as? String == "zstd")
    }

    @Test func floatSplitBenchSetsItsSaveOpenAndLoadBesideZstd() throws {
        let run = CLI.run(["bench", "fsz", "--scale", "0.005", "--repeat", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let rows = try #require(object["rows"] as? [[String: Any]])
        #expect(
            rows.compactMap { $0["method"] as? String }
                == ["ours: save .safetensors.fsz", "ours: save .safetensors.zst", "ours: save .pt.zst", "zstd -1 -T0 FILE"])
        let uncompressed = try #require(object["uncompressed_bytes"] as? Int)
        for row in rows {
            #expect((row["save_seconds"] as? Double ?? 0) > 0)
            #expect((row["verified_load_seconds"] as? Double ?? 0) > 0)
            let compressed = row["compressed_bytes"] as? Int ?? 0
            #expect(compressed > 0 && compressed < uncompressed, "\(row)")
        }
        let shares = try #require(object["fsz_by_dtype"] as? [[String: Any]])
        #expect(shares.contains { $0["dtype"] as? String == "float32" })
        for key in ["fsz_decode_seconds", "fsz_decode_cpu_seconds", "fsz_repeated_decode_seconds", "fsz_repeated_decode_cpu_seconds"] {
            #expect((object[key] as? Double ?? 0) > 0, "\(key)")
        }
    }

    @Test func floatSplitBenchAloneMeasuresOnlyTheFloatSplitFile() throws {
        let run = CLI.run(["bench", "fsz", "--fsz-only", "--scale", "0.005", "--repeat", "2"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("ours: save .safetensors.fsz"))
        #expect(!run.stdout.contains(".zst"), "\(run.stdout)")
        #expect(run.stdout.contains("into fresh memory:") && run.stdout.contains("again, into reused memory:"), "\(run.stdout)")
    }

    @Test func fileGoesOnlyWithTheFloatSplitBench() {
        let run = CLI.run(["bench", "compression", "zst", "--file", "model.safetensors"])
        #expect(run.status == 64)
        #expect(run.stderr.contains("--file"))
    }

    @Test(arguments: ["rar", "fsz"]) func compressionBenchRefusesAnUnknownCodecAndPointsFloatSplitToItsOwn(codec: String) {
        let run = CLI.run(["bench", "compression", codec])
        #expect(run.status == 64)
        #expect(run.stderr.contains("CODEC") && run.stderr.contains("ckpt bench fsz"), "\(run.stderr)")
    }
}
