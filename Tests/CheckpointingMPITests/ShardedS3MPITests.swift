import CheckpointingTestSupport
import Foundation
import Testing

/// One moto server for the S3 MPI tests, with parts as small as 1 MiB allowed, so a shard of a
/// few MiB goes up in several.
struct MotoForMPI: SuiteTrait, TestScoping {
    @TaskLocal static var server: LoopbackServer?

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let server = try MotoServer.start(environment: ["S3_UPLOAD_PART_MIN_SIZE": String(1 << 20)])
        defer { server.stop() }
        try await Self.$server.withValue(server) { try await function() }
    }
}

extension MPIProcessGroupTests {
    /// Sharded checkpoints in an object store across real processes, as a multi-node job with no
    /// shared disk runs them: every rank has a folder of its own (its staging
    /// folder and its saver's local folder), and a load or resume starts from empty ones, so
    /// nothing reaches a rank but through the store (moto on 127.0.0.1).
    @Suite(MotoForMPI()) struct ShardedS3MPITests {
        /// A new bucket on the suite's server, and the environment that sends `s3://` there.
        static func bucket() throws -> (name: String, environment: [String: String]) {
            let server = try #require(MotoForMPI.server)
            let name = "mpi-" + UUID().uuidString.prefix(13).lowercased()
            _ = try runPython(
                "import boto3, sys\nboto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b').create_bucket(Bucket=sys.argv[2])",
                [server.endpoint, name])
            var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AWS_") && !$0.key.hasPrefix("S3_") }
            environment.merge([
                "S3_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": "AKIATESTTESTTESTTEST", "AWS_SECRET_ACCESS_KEY": "test-secret-key",
                "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "3", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            ]) { $1 }
            return (name, environment)
        }

        /// The size of an object, from boto3.
        static func objectSize(_ url: String) throws -> Int {
            let server = try #require(MotoForMPI.server)
            let output = try runPython(
                "import boto3, sys\nb, k = sys.argv[2][5:].split('/', 1)\nprint(boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b').head_object(Bucket=b, Key=k)['ContentLength'])",
                [server.endpoint, url])
            return try #require(Int(output.trimmingCharacters(in: .whitespacesAndNewlines)))
        }

        static func expectEveryRank(_ run: MPIRun, of processes: Int, says phrase: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let lines = run.lines
            for rank in 0..<processes {
                #expect(lines[rank]?.contains { $0.contains(phrase) } == true, "rank \(rank):\n\(run.transcript)", sourceLocation: sourceLocation)
            }
            #expect(!run.stdout.contains("FAILED"), "\(run.transcript)", sourceLocation: sourceLocation)
        }

        static func json(_ text: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        }

        @Test func uploadedByFourRanksLoadsOnOneToFourAndReshardsFetchingOnlyWhatItNeeds() throws {
            let (bucket, environment) = try Self.bucket()
            let url = "s3://\(bucket)/run"
            try withTemporaryFolder { folder in
                let save = try MPILauncher.run(
                    ["s3-sharded-save", "--folder", folder + "/save", "--url", url, "--megabytes", "8"], processes: 4, environment: environment)
                #expect(save.status == 0, "\(save.transcript)")
                Self.expectEveryRank(save, of: 4, says: "every rank got every object URL")
                // Nothing of the save is left on any disk for a load to read.
                try FileManager.default.removeItem(atPath: folder + "/save")

                for processes in 1...4 {
                    let load = try MPILauncher.run(
                        ["s3-sharded-load", "--folder", folder + "/load\(processes)", "--url", url, "--megabytes", "8"], processes: processes,
                        environment: environment)
                    #expect(load.status == 0, "\(load.transcript)")
                    Self.expectEveryRank(load, of: processes, says: "bit-identical to the original")
                }

                // 4 -> 2 with `ckpt convert`: the two ranks download each tensor once, and of
                // the rest only the indexes (what is not tensor data in the shards, read by at
                // most both ranks) and the manifest (read by both).
                let ckpt = try MPILauncher.ckpt()
                let manifest = url + "/ep1-ba4-rank0.tar.manifest.json"
                let inspect = try MPILauncher.run(["inspect", manifest, "--json"], processes: 1, program: ckpt, environment: environment)
                #expect(inspect.status == 0, "\(inspect.transcript)")
                let report = try Self.json(inspect.stdout)
                let tensorBytes = try #require(report["tensor_bytes"] as? Int)
                let indexes = try #require(report["file_bytes"] as? Int) - tensorBytes
                let reshard = try MPILauncher.run(
                    ["convert", "--sharded", manifest, "s3://\(bucket)/two/rank{rank}", "--json"], processes: 2, program: ckpt,
                    environment: environment)
                #expect(reshard.status == 0, "\(reshard.transcript)")
                let converted = try Self.json(reshard.stdout)
                #expect(converted["paths"] as? [String] == ["s3://\(bucket)/two/rank0.tar", "s3://\(bucket)/two/rank1.tar"])
                let downloaded = try #require(converted["bytes_downloaded"] as? Int)
                let bound = tensorBytes * 11 / 10 + 2 * indexes + 2 * (try Self.objectSize(manifest))
                #expect(downloaded >= tensorBytes && downloaded <= bound, "downloaded \(downloaded) for \(tensorBytes) of tensors (bound \(bound))")
                #expect((converted["bytes_downloaded_by_rank"] as? [Int])?.count == 2)

                let verify = try MPILauncher.run(
                    ["verify", "s3://\(bucket)/two/rank0.tar.manifest.json"], processes: 1, program: ckpt, environment: environment)
                #expect(verify.status == 0 && verify.stdout.contains("sharded, 2 shards"), "\(verify.transcript)")
            }
        }

        @Test func aShardedSaverOnFourRanksKeepsTwoCheckpointsInTheStoreAndNothingElse() throws {
            let (bucket, environment) = try Self.bucket()
            try withTemporaryFolder { folder in
                let train = try MPILauncher.run(
                    ["s3-sharded-saver-train", "--folder", folder, "--url", "s3://\(bucket)/saver", "--megabytes", "1"], processes: 4,
                    environment: environment)
                #expect(train.status == 0, "\(train.transcript)")
                Self.expectEveryRank(train, of: 4, says: "saved 8 sharded checkpoints")
                let keys = train.lines[0]?.first { $0.hasPrefix("keys: ") }.map { $0.dropFirst("keys: ".count).split(separator: " ").map(String.init) }
                let kept = [7, 8].flatMap { batch in
                    ["ba\(batch)-rank0.tar" + ".manifest.json"] + (0..<4).map { "ba\(batch)-rank\($0).tar" }
                }
                #expect(keys == ([".checkpoints-rank0.json", "latest-rank0.symlink"] + kept).sorted(), "\(train.transcript)")
                for rank in 0..<4 {
                    let local = try FileManager.default.contentsOfDirectory(atPath: "\(folder)/rank\(rank)/checkpoints")
                    #expect(local.filter { $0.hasSuffix(".tar") }.sorted() == ["ba7-rank\(rank).tar", "ba8-rank\(rank).tar"], "rank \(rank): \(local)")
                }
            }
        }

        @Test func autoresumeOnThreeRanksWithEmptyLocalFoldersLoadsFromTheStore() throws {
            let (bucket, environment) = try Self.bucket()
            let url = "s3://\(bucket)/resume"
            try withTemporaryFolder { folder in
                let train = try MPILauncher.run(
                    ["s3-sharded-saver-train", "--folder", folder + "/first", "--url", url, "--megabytes", "1"], processes: 3,
                    environment: environment)
                #expect(train.status == 0, "\(train.transcript)")
                let resumed = try MPILauncher.run(
                    ["s3-sharded-saver-resume", "--folder", folder + "/fresh", "--url", url, "--megabytes", "1"], processes: 3,
                    environment: environment)
                #expect(resumed.status == 0, "\(resumed.transcript)")
                Self.expectEveryRank(resumed, of: 3, says: "resumed at batch 8 from \(url)/ba8-rank0.tar.manifest.json")
            }
        }

        /// Rank 2 of 4 dies uploading its shard of the batch-8 checkpoint: the others fail with
        /// the timeout error, no batch-8 manifest appears, and a new run on fresh nodes resumes
        /// from batch 4.
        @Test func aRankKilledMidUploadCommitsNothingAndTheNextRunResumesFromThePreviousCheckpoint() throws {
            let (bucket, environment) = try Self.bucket()
            let url = "s3://\(bucket)/killed"
            try withTemporaryFolder { folder in
                let killed = try MPILauncher.run(
                    ["s3-sharded-saver-killed", "--folder", folder + "/first", "--url", url, "--timeout", "5", "--megabytes", "16"], processes: 4,
                    mpirunOptions: ["--enable-recovery"], environment: environment)
                let lines = killed.lines
                #expect(lines[2]?.contains { $0.contains("killing itself mid-upload") } == true, "\(killed.transcript)")
                for rank in [0, 1, 3] {
                    #expect(lines[rank]?.contains { $0.contains("the batch-8 save failed") && $0.contains("timed out") } == true,
                        "rank \(rank):\n\(killed.transcript)")
                }
                #expect(!killed.stdout.contains("FAILED"), "\(killed.transcript)")

                let resumed = try MPILauncher.run(
                    ["s3-sharded-saver-resume", "--folder", folder + "/fresh", "--url", url, "--megabytes", "16", "--variant", "upload-only"],
                    processes: 4, environment: environment)
                #expect(resumed.status == 0, "\(resumed.transcript)")
                // Rank 0 deleted the shards the others had uploaded once it gave up on rank 2.
                let keys = resumed.lines[0]?.first { $0.hasPrefix("keys: ") }?.dropFirst("keys: ".count).split(separator: " ").map(String.init)
                let expected = [
                    ".checkpoints-rank0.json", "ba4-rank0.tar", "ba4-rank0.tar.manifest.json", "ba4-rank1.tar", "ba4-rank2.tar", "ba4-rank3.tar",
                    "latest-rank0.symlink",
                ]
                #expect(keys == expected, "\(resumed.transcript)")
                Self.expectEveryRank(resumed, of: 4, says: "resumed at batch 4")
            }
        }
    }
}
