import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

@testable import CheckpointingS3

/// Checkpoints through a real S3 server on loopback (moto): round trips, multipart uploads,
/// listings, errors, the ckpt commands and the saver's remote folder.
@Suite(.motoServer) struct S3StoreTests {
    @Test func nativeCheckpointRoundTripsThroughS3() throws {
        try withBucket { store, bucket in
            let state = try smallState(batch: 7)
            let paths = try saveCheckpoint(state, filename: "s3://\(bucket)/{run_name}/ep{epoch}-ba{batch}.safetensors")
            let url = "s3://\(bucket)/s3-run/ep1-ba7.safetensors"
            #expect(paths == [url])
            let info = try #require(try store.info(ObjectLocation(url)!))
            #expect(info.size > 0)
            #expect(store.transferReports.last?.verifiedAgainstETag == true)

            let loaded = try loadCheckpoint(url)
            #expect(loaded.timestamp.batch == 7)
            #expect(loaded.runName == "s3-run")
            #expect(tensorDigests(loaded.tree) == tensorDigests(state.tree))
            let file = try CheckpointFile.open(url)
            #expect(file.path == url)
            #expect(file.formatName == "native")
            try file.verify()

            // Python's safetensors reads the object's bytes (checked when the folder goes away).
            let folder = try TemporaryFolder()
            try store.download(ObjectLocation(url)!, to: folder.file("copy.safetensors"))
            // A file:// URL loads the same local file.
            let local = try loadCheckpoint("file://" + folder.file("copy.safetensors"))
            #expect(tensorDigests(local.tree) == tensorDigests(state.tree))
        }
    }

    /// Every format this build writes goes through s3:// unchanged: saves are staged through
    /// the same atomic writer and loads through the same mapping as local files. A format this
    /// build cannot write yet (refused locally as unsupported) is left out.
    @Test(arguments: [
        "safetensors", "pt", "tar", "tgz", "safetensors.gz", "safetensors.zst", "pt.bz2", "pt.xz", "pt.lzma", "pt.lz4",
        "pt.lzo", "pt.zst", "tar.bz2", "tar.xz",
    ])
    func everyFormatThisBuildWritesRoundTripsThroughS3(_ extensionChain: String) throws {
        let state = try smallState()
        let local = try TemporaryFolder()
        do {
            try saveCheckpoint(state, filename: local.file("ep1-ba7.\(extensionChain)"))
        } catch {
            // Not `catch ... where`: Swift 6.3.1 crashes compiling one over typed throws here
            // (swiftlang/swift#88220).
            guard error.code == .unsupportedFormat else { throw error }
            return
        }
        try withBucket { _, bucket in
            let url = "s3://\(bucket)/formats/ep1-ba7.\(extensionChain)"
            #expect(try saveCheckpoint(state, filename: url) == [url])
            let loaded = try loadCheckpoint(url)
            #expect(tensorDigests(loaded.tree) == tensorDigests(state.tree))
            #expect(loaded.timestamp.batch == 7)
            #expect(try CheckpointFile.open(url).formatName == CheckpointFile.open(local.file("ep1-ba7.\(extensionChain)")).formatName)
        }
    }

    @Test func loadsLeaveNoStagingFilesBehind() throws {
        try withBucket { _, bucket in
            let name = "staging-\(UUID().uuidString).safetensors"
            try saveCheckpoint(try smallState(), filename: "s3://\(bucket)/\(name)")
            var state = try smallState(batch: 0)
            state.model["layer.bias"] = .tensor(try Tensor(shape: [32], scalars: [Float](repeating: 0, count: 32)))
            try loadCheckpoint("s3://\(bucket)/\(name)", into: &state)
            #expect(state.timestamp.batch == 7)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: ObjectStores.stagingFolder).filter { $0.contains(name) }
            #expect(leftovers.isEmpty)
        }
    }

    /// Blocking calls from more tasks than the cooperative pool has threads: every one finishes,
    /// because a blocking call runs its task on the S3 client's own threads and its HTTP work on
    /// the event loops, never on the pool its caller blocks.
    @Test(.timeLimit(.minutes(1))) func blockingLoadsFromManyTasksDoNotDeadlock() async throws {
        let server = try #require(MotoSuite.server)
        let store = try makeStore(endpoint: server.endpoint, partSize: 5 << 20)
        defer { store.shutdown() }
        let bucket = "tasks-" + UUID().uuidString.prefix(13).lowercased()
        try createBucket(bucket, in: store)
        ObjectStores.register(store, for: "s3://\(bucket)")
        defer { ObjectStores.unregister(prefix: "s3://\(bucket)") }
        var state = try smallState(batch: 3)
        state.model["big"] = .tensor(try Tensor(dtype: .uint8, shape: [12 << 20]) { _ in })
        try await saveCheckpoint(state, filename: "s3://\(bucket)/ba3.safetensors")
        // A synchronous function, so that the tasks call the blocking load, not its async overload.
        @Sendable func blockingLoadBatch() throws -> Int { try loadCheckpoint("s3://\(bucket)/ba3.safetensors").timestamp.batch }
        let batches = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<(2 * ProcessInfo.processInfo.activeProcessorCount + 4) {
                group.addTask { try blockingLoadBatch() }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(batches.count == 2 * ProcessInfo.processInfo.activeProcessorCount + 4)
        #expect(batches.allSatisfy { $0 == 3 })
    }

    @Test func keysWithSpacesUnicodeAndReservedCharacters() throws {
        try withBucket { store, bucket in
            let key = "runs/a b ü+€ (1)/x=y&z;%25~!/ep1-ba7.safetensors"
            let url = "s3://\(bucket)/\(key)"
            try saveCheckpoint(try smallState(), filename: url)
            let listing = try store.list(ObjectLocation("s3://\(bucket)/runs/a b ü+€ (1)/")!, delimiter: nil)
            #expect(listing.objects.map(\.location.key) == [key])
            #expect(try loadCheckpoint(url).timestamp.batch == 7)
        }
    }

    /// 256 MB in 8 MiB parts: 32 parts, 4 in flight; the ETag is the MD5 of the parts' MD5s
    /// with `-32`; the download fetches the same 32 parts and checks each against it.
    @Test func multipartUploadOf256MBShowsItsPartsInTheETag() throws {
        try withBucket(partSize: 8 << 20) { store, bucket in
            var random = SplitMix64(seed: 256)
            var state = TrainingState(runName: "big")
            state.model["blob"] = .tensor(try Tensor(dtype: .uint8, shape: [256 << 20]) { bytes in
                let words = bytes.bindMemory(to: UInt64.self)
                for index in words.indices { words[index] = random.next() }
            })
            let url = "s3://\(bucket)/big/ep0-ba0.safetensors"
            try saveCheckpoint(state, filename: url)

            let upload = try #require(store.transferReports.last)
            #expect(upload.direction == .upload)
            #expect(upload.parts == 33)  // 256 MiB of tensor plus the header: 32 full parts and a small one
            #expect(upload.partSize == 8 << 20)
            #expect(upload.partsInFlight == 4)
            #expect(upload.verifiedAgainstETag)
            let etag = try #require(try store.info(ObjectLocation(url)!)?.etag)
            #expect(etag.hasSuffix("-33"))
            #expect(etag == upload.etag)

            let loaded = try loadCheckpoint(url)
            let download = try #require(store.transferReports.last)
            #expect(download.direction == .download)
            #expect(download.parts == 33)
            #expect(download.verifiedAgainstETag)
            #expect(tensorDigests(loaded.tree) == tensorDigests(state.tree))
        }
    }

    @Test func listingFollowsContinuationTokens() throws {
        try withBucket(listPageSize: 3) { store, bucket in
            for index in 0..<8 { try store.write(Array("\(index)".utf8), to: ObjectLocation("s3://\(bucket)/run/f\(index)")!) }
            for index in 0..<2 { try store.write([1], to: ObjectLocation("s3://\(bucket)/run/sub/g\(index)")!) }
            try store.write([2], to: ObjectLocation("s3://\(bucket)/other")!)

            let level = try store.list(ObjectLocation("s3://\(bucket)/run/")!, delimiter: "/")
            #expect(level.objects.map(\.location.name) == (0..<8).map { "f\($0)" })
            #expect(level.commonPrefixes == ["run/sub/"])
            let all = try store.list(ObjectLocation("s3://\(bucket)/run/")!, delimiter: nil)
            #expect(all.objects.count == 10)
            #expect(try store.list(ObjectLocation("s3://\(bucket)/")!, delimiter: nil).objects.count == 11)
        }
    }

    @Test func ckptLsListsAnS3PrefixPageByPage() throws {
        try withBucket { store, bucket in
            for batch in [10, 20, 30] {
                try saveCheckpoint(try smallState(batch: batch), filename: "s3://\(bucket)/run/ba\(batch).safetensors")
            }
            try store.write(Array("run/ba20.safetensors".utf8), to: ObjectLocation("s3://\(bucket)/run/latest-rank0.symlink")!)
            try store.write(Array("not a checkpoint".utf8), to: ObjectLocation("s3://\(bucket)/run/notes.txt")!)
            try store.write([1], to: ObjectLocation("s3://\(bucket)/run/old/x")!)

            let run = try CKPT.run(["ls", "s3://\(bucket)/run/", "--page-size", "2", "--json"], endpoint: store.configuration.endpoint!)
            #expect(run.status == 0, "\(run.stderr)")
            let root = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            let entries = try #require(root["checkpoints"] as? [[String: Any]])
            #expect(entries.map { $0["name"] as? String } == ["ba10.safetensors", "ba20.safetensors", "ba30.safetensors", "notes.txt"])
            #expect(entries.map { $0["batch"] as? Int } == [10, 20, 30, nil])
            #expect(entries.map { $0["latest"] as? Bool } == [false, true, false, false])
            #expect(entries.prefix(3).allSatisfy { $0["format"] as? String == "native" })
            #expect(root["folders"] as? [String] == ["old/"])

            let table = try CKPT.run(["ls", "s3://\(bucket)/run"], endpoint: store.configuration.endpoint!)
            #expect(table.status == 0)
            #expect(table.stdout.contains("ba20.safetensors") && table.stdout.contains("<- latest"))
        }
    }

    @Test func ckptCommandsAcceptS3URLsOnEitherSide() throws {
        try withBucket { store, bucket in
            let endpoint = store.configuration.endpoint!
            let folder = try TemporaryFolder()
            try saveCheckpoint(try smallState(batch: 3), filename: folder.file("local.safetensors"))

            let up = try CKPT.run(["convert", folder.file("local.safetensors"), "s3://\(bucket)/c/ep{epoch}-ba{batch}.safetensors"], endpoint: endpoint)
            #expect(up.status == 0, "\(up.stderr)")
            #expect(up.stdout == "s3://\(bucket)/c/ep1-ba3.safetensors\n")
            let verify = try CKPT.run(["verify", "s3://\(bucket)/c/ep1-ba3.safetensors"], endpoint: endpoint)
            #expect(verify.status == 0)
            #expect(verify.stdout.hasPrefix("ok: s3://\(bucket)/c/ep1-ba3.safetensors: native, 2 tensors"))
            let inspect = try CKPT.run(["inspect", "--json", "s3://\(bucket)/c/ep1-ba3.safetensors"], endpoint: endpoint)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            #expect(report["run_name"] as? String == "s3-run")
            #expect(report["tensor_count"] as? Int == 2)
            let across = try CKPT.run(["convert", "s3://\(bucket)/c/ep1-ba3.safetensors", "s3://\(bucket)/d/copy.safetensors", "--weights-only"], endpoint: endpoint)
            #expect(across.status == 0, "\(across.stderr)")
            let down = try CKPT.run(["convert", "s3://\(bucket)/d/copy.safetensors", folder.file("back.safetensors")], endpoint: endpoint)
            #expect(down.status == 0, "\(down.stderr)")
            let back = try loadCheckpoint(folder.file("back.safetensors"), weightsOnly: true)
            #expect(tensorDigests(back.tree).values.sorted() == tensorDigests(try smallState().tree).values.sorted())

            let missing = try CKPT.run(["verify", "s3://\(bucket)/c/nothing-here.safetensors"], endpoint: endpoint)
            #expect(missing.status == 1)
            #expect(missing.stderr == "Error: s3://\(bucket)/c/nothing-here.safetensors: no such object in bucket \"\(bucket)\"\n")
        }
    }

    @Test func missingBucketAndMissingKeyAreToldApart() throws {
        try withBucket { store, bucket in
            let missingKey = #expect(throws: CheckpointError.self) { try loadCheckpoint("s3://\(bucket)/no/such.safetensors") }
            #expect(missingKey?.code == .notFound)
            #expect(missingKey?.description == "s3://\(bucket)/no/such.safetensors: no such object in bucket \"\(bucket)\"")

            let absent = "absent-" + bucket
            ObjectStores.register(store, for: "s3://\(absent)")
            defer { ObjectStores.unregister(prefix: "s3://\(absent)") }
            let missingBucket = #expect(throws: CheckpointError.self) { try loadCheckpoint("s3://\(absent)/k.safetensors") }
            #expect(missingBucket?.code == .notFound)
            #expect(missingBucket?.message.contains("the bucket \"\(absent)\" does not exist at \(store.configuration.endpoint!)") == true)
            let save = #expect(throws: CheckpointError.self) { try saveCheckpoint(try smallState(), filename: "s3://\(absent)/k.safetensors") }
            #expect(save?.code == .notFound)
            #expect(save?.message.contains("does not exist") == true)
        }
    }

    /// The saver uploads after each local commit, keeps two checkpoints remotely and one
    /// locally, points `latest-rank0.symlink` at the newest, and a run on a machine with an
    /// empty folder resumes from the store and carries on pruning what the first one uploaded.
    @Test func saverUploadsPrunesRemotelyAndResumesOnAnotherMachine() throws {
        try withBucket { store, bucket in
            let remote = "s3://\(bucket)/{run_name}/checkpoints"
            func options(_ folder: String, asynchronous: Bool) -> CheckpointSaver.Options {
                CheckpointSaver.Options(
                    folder: folder, filename: "ep{epoch}-ba{batch}.safetensors", saveInterval: "1ba", checkpointsToKeep: 1,
                    remoteFolder: remote, remoteCheckpointsToKeep: 2, asynchronous: asynchronous, saveOnTermination: false)
            }
            func remoteNames() throws -> [String] {
                try store.list(ObjectLocation("s3://\(bucket)/s3-run/checkpoints/")!, delimiter: nil).objects.map(\.location.name)
            }
            let pointer = ObjectLocation("s3://\(bucket)/s3-run/checkpoints/latest-rank0.symlink")!

            let first = try TemporaryFolder()
            let saver = try CheckpointSaver(options: options(first.path, asynchronous: false))
            try saver.fitStart(try smallState(batch: 0))
            for batch in 1...4 {
                try saver.batchEnd(try smallState(batch: batch))
                #expect(String(decoding: try store.read(pointer, range: nil), as: UTF8.self) == "s3-run/checkpoints/ep1-ba\(batch).safetensors")
            }
            try saver.fitEnd(try smallState(batch: 4))
            #expect(try remoteNames() == [".checkpoints-rank0.json", "ep1-ba3.safetensors", "ep1-ba4.safetensors", "latest-rank0.symlink"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: first.path).filter { $0.hasSuffix(".safetensors") } == ["ep1-ba4.safetensors"])

            // Another machine: nothing local; autoresume finds the newest checkpoint in the store.
            let second = try TemporaryFolder()
            let resumedSaver = try CheckpointSaver(options: options(second.path, asynchronous: true))
            var state = try smallState(batch: 0)
            let resumed = try #require(try resumedSaver.autoresume(into: &state))
            #expect(resumed.path == "s3://\(bucket)/s3-run/checkpoints/ep1-ba4.safetensors")
            #expect(state.timestamp.batch == 4)
            try resumedSaver.batchEnd(try smallState(batch: 5))
            try resumedSaver.fitEnd(try smallState(batch: 5))
            #expect(try remoteNames() == [".checkpoints-rank0.json", "ep1-ba4.safetensors", "ep1-ba5.safetensors", "latest-rank0.symlink"])
            #expect(String(decoding: try store.read(pointer, range: nil), as: UTF8.self) == "s3-run/checkpoints/ep1-ba5.safetensors")
        }
    }
}

/// Runs the built `ckpt` with an S3 endpoint and test credentials, and nothing from the real
/// environment's AWS settings.
enum CKPT {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var executable: URL {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ckpt")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return Fixtures.packageRoot.appendingPathComponent(".build/debug/ckpt")
    }

    static func run(_ arguments: [String], endpoint: String, extraEnvironment: [String: String] = [:]) throws -> Run {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AWS_") && !$0.key.hasPrefix("S3_") }
        environment.merge([
            "HOME": home.path, "S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": testCredentials.accessKeyID,
            "AWS_SECRET_ACCESS_KEY": testCredentials.secretAccessKey, "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2",
        ]) { $1 }
        environment.merge(extraEnvironment) { $1 }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}
