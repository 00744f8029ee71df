import Foundation
import Testing

/// `ckpt bench SUBCOMMAND`: each benchmark runs on a small bench state and reports every figure.
@Suite struct BenchCommandTests {
    static func report(_ arguments: [String]) throws -> [String: Any] {
        let run = CLI.run(["bench"] + arguments + ["--scale", "0.002", "--repeat", "1", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
    }

    @Test func saveIsTheDefaultBenchmark() throws {
        let named = try Self.report(["save"])
        let unnamed = try Self.report([])
        #expect(Set(named.keys) == Set(unnamed.keys))
        #expect(named["tensor_count"] as? Int == 584 && unnamed["tensor_count"] as? Int == 584)
    }

    @Test func torchBenchSetsThePtSaveOpenAndReadBesideNative() throws {
        let report = try Self.report(["pt"])
        #expect(report["format"] as? String == "pt")
        for key in ["native_save_seconds", "pt_save_seconds", "pt_open_seconds", "pt_read_verify_seconds", "pt_read_verify_warm_seconds"] {
            #expect((report[key] as? Double ?? -1) > 0, "\(key)")
        }
        #expect((report["pt_file_bytes"] as? Int ?? 0) > (report["tensor_bytes"] as? Int ?? .max))
    }

    @Test func huggingFaceBenchSplitsByTheMaximumShardSize() throws {
        let report = try Self.report(["hf", "--max-shard-size", "1MB"])
        #expect(report["format"] as? String == "hf")
        #expect(report["hf_max_shard_size"] as? Int == 1_000_000)
        let shards = try #require(report["hf_shard_count"] as? Int)
        let bytes = try #require(report["hf_folder_bytes"] as? Int)
        #expect(shards >= bytes / 1_000_000, "a 1 MB limit splits \(bytes) bytes into \(shards) shards")
        for key in ["hf_save_seconds", "hf_open_seconds", "hf_read_verify_seconds"] {
            #expect((report[key] as? Double ?? -1) > 0, "\(key)")
        }
    }

    @Test func saverBenchReportsEveryStall() throws {
        let report = try Self.report(["saver"])
        for key in ["sync_stall_seconds", "async_owned_stall_seconds", "async_borrowed_stall_seconds", "background_write_seconds"] {
            #expect((report[key] as? Double ?? -1) > 0, "\(key)")
        }
    }

    @Test func optionsOfOneBenchmarkAreRefusedByAnother() {
        let shardSize = CLI.run(["bench", "pt", "--max-shard-size", "1MB"])
        #expect(shardSize.status == 64 && shardSize.stderr.contains("--max-shard-size"), "\(shardSize.stderr)")
        let url = CLI.run(["bench", "s3", "/not/a/url"])
        #expect(url.status == 64 && url.stderr.contains("s3://"), "\(url.stderr)")
        let sharded = CLI.run(["bench", "sharded", "--s3", "bucket/prefix"])
        #expect(sharded.status == 64 && sharded.stderr.contains("--s3"), "\(sharded.stderr)")
    }
}
