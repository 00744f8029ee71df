import Checkpointing
import CheckpointingTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import CheckpointingS3

/// The S3 store from Swift concurrency: every operation natively async (requests in flight hold
/// no thread), and cancellation that stops a transfer at once and leaves nothing behind. (That
/// the blocking forms may be called from every thread of the cooperative pool at once is
/// `S3StoreTests.blockingLoadsFromManyTasksDoNotDeadlock`.)
@Suite(.motoServer) struct S3AsyncTests {
    /// A store on the suite's moto server with a fresh bucket.
    static func motoStore(partSize: Int = 5 << 20, maxConcurrency: Int = 4) async throws -> (S3ObjectStore, String) {
        let moto = try #require(MotoSuite.server)
        let store = try makeStore(endpoint: moto.endpoint, partSize: partSize, maxConcurrency: maxConcurrency)
        let bucket = "async-" + UUID().uuidString.prefix(13).lowercased()
        _ = try await store.client.send(S3Operation(name: "CreateBucket", method: .PUT, bucket: bucket, key: nil))
        return (store, bucket)
    }

    static func randomFile(_ folder: TemporaryFolder, _ name: String, megabytes: Int, seed: UInt64) throws -> [UInt8] {
        var random = SplitMix64(seed: seed)
        let bytes = (0..<(megabytes << 17)).flatMap { _ in withUnsafeBytes(of: random.next()) { Array($0) } }
        try Data(bytes).write(to: URL(fileURLWithPath: folder.file(name)))
        return bytes
    }

    @Test func everyOperationWorksFromATask() async throws {
        let (store, bucket) = try await Self.motoStore()
        defer { store.shutdown() }
        let folder = try TemporaryFolder()
        let bytes = try Self.randomFile(folder, "big.bin", megabytes: 12, seed: 3)
        let location = try #require(ObjectLocation("s3://\(bucket)/run/big.bin"))

        let uploaded = try await store.upload(file: folder.file("big.bin"), to: location)
        #expect(uploaded.size == bytes.count)
        #expect(store.transferReports.last?.parts == 3)  // 12 MB in parts of 5 MB
        #expect(store.transferReports.last?.verifiedAgainstETag == true)

        let downloaded = try await store.download(location, to: folder.file("back.bin"))
        #expect(downloaded.etag == uploaded.etag)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: folder.file("back.bin")))) == bytes)
        #expect(store.transferReports.last?.verifiedAgainstETag == true)

        #expect(try await store.info(location)?.size == bytes.count)
        #expect(try await store.read(location, range: 1000..<1016) == Array(bytes[1000..<1016]))
        #expect(try await store.read(location, range: 7..<9, ifMatch: uploaded.etag) == Array(bytes[7..<9]))
        let pointer = try #require(ObjectLocation("s3://\(bucket)/run/latest"))
        try await store.write(Array("run/big.bin".utf8), to: pointer)
        #expect(try await store.read(pointer, range: nil) == Array("run/big.bin".utf8))
        let listing = try await store.list(try #require(ObjectLocation("s3://\(bucket)/run/")), delimiter: "/")
        #expect(Set(listing.objects.map(\.location.name)) == ["big.bin", "latest"])
        try await store.delete(location)
        #expect(try await store.info(location) == nil)

        // The same store through the protocol's `async` requirements (what generic code sees).
        let generic: any ObjectStore = store
        #expect(try await generic.info(pointer)?.size == 11)
    }

    /// Requests in flight hold no thread: more of them are answered at once than there are
    /// threads in the cooperative pool and in the library's blocking pool together.
    @Test func requestsInFlightHoldNoThread() async throws {
        let folder = try TemporaryFolder()
        _ = try Self.randomFile(folder, "object.bin", megabytes: 1, seed: 4)
        let stub = try startPython(S3Stub.script, ["slow", folder.file("object.bin")], name: "s3-stub")
        defer { stub.stop() }
        let store = try makeStore(endpoint: stub.endpoint, maxConcurrency: 30)
        defer { store.shutdown() }
        let location = try #require(ObjectLocation("s3://slow/object.bin"))
        let requests = 24
        try await withThrowingTaskGroup(of: Int?.self) { group in
            for _ in 0..<requests { group.addTask { try await store.info(location)?.size } }
            for try await size in group { #expect(size == 1 << 20) }
        }
        let inFlight = stub.log.split(separator: "\n").compactMap { line in
            line.hasPrefix("in-flight ") ? Int(line.dropFirst("in-flight ".count)) : nil
        }
        let threads = 2 * max(2, ProcessInfo.processInfo.activeProcessorCount)
        #expect((inFlight.max() ?? 0) > threads, "at most \(inFlight.max() ?? 0) requests were in flight at once")
    }

    /// Cancelling an upload midway throws `.cancelled` at once, and the multipart upload is
    /// aborted: no object appears and no upload is left open in the bucket.
    @Test func cancellingAnUploadAbortsItAndLeavesNothing() async throws {
        let (store, bucket) = try await Self.motoStore(partSize: 5 << 20, maxConcurrency: 2)
        defer { store.shutdown() }
        let folder = try TemporaryFolder()
        _ = try Self.randomFile(folder, "big.bin", megabytes: 40, seed: 5)
        let location = try #require(ObjectLocation("s3://\(bucket)/run/big.bin"))

        let upload = Mutex<Task<ObjectInfo, any Error>?>(nil)
        let progress = CheckpointProgress(interval: .zero) { update in
            // The first part is up: cancel the rest.
            if update.completedBytes > 0, !update.isFinished { upload.withLock { $0?.cancel() } }
        }
        let task = Task {
            try await CheckpointProgress.$current.withValue(progress) {
                try await store.upload(file: folder.file("big.bin"), to: location)
            }
        }
        upload.withLock { $0 = task }
        let failure = await #expect(throws: CheckpointError.self) { try await task.value }
        #expect(failure?.code == .cancelled)
        #expect(failure?.path == location.description)

        #expect(try await store.info(location) == nil)
        let open = try await store.client.send(S3Operation(
            name: "ListMultipartUploads", method: .GET, bucket: bucket, key: nil, query: [("uploads", "")]))
        #expect(!String(decoding: open.bytes, as: UTF8.self).contains("<UploadId>"), "an upload was left open")
        // The cancellation stopped the upload: far fewer than its 40 MB went up.
        #expect(store.transfers.snapshot.bytesUploaded < 30 << 20)
        #expect(store.transferReports.isEmpty)
    }

    /// A task cancelled while the client waits to retry stops at once, not after the retries.
    ///
    /// The read runs on the S3 client's own threads and is cancelled from a thread: the test
    /// measures the client, not how soon a busy cooperative pool (the other suites' blocking
    /// tests) gets around to the test's own task.
    @Test func cancellingDuringBackoffStopsAtOnce() async throws {
        let folder = try TemporaryFolder()
        _ = try Self.randomFile(folder, "object.bin", megabytes: 1, seed: 6)
        let stub = try startPython(S3Stub.script, ["unavailable", folder.file("object.bin")], name: "s3-stub")
        defer { stub.stop() }
        let store = try S3ObjectStore(configuration: S3Configuration(
            endpoint: stub.endpoint, region: "us-east-1", credentials: testCredentials,
            retry: .init(maxAttempts: 3, baseDelay: .seconds(300), maxDelay: .seconds(300))))
        defer { store.shutdown() }
        let location = try #require(ObjectLocation("s3://busy/object.bin"))
        let task = Task(executorPreference: S3Client.bridgeExecutor) { () async -> (CheckpointError?, Duration) in
            let start = ContinuousClock.now
            do throws(CheckpointError) {
                _ = try await store.read(location, range: 0..<16)
                return (nil, ContinuousClock.now - start)
            } catch {
                return (error, ContinuousClock.now - start)
            }
        }
        // Once the first 503 is in, the client waits 150-300 s before its second attempt.
        let canceller = Thread {
            while !stub.log.contains("503") { usleep(20_000) }
            task.cancel()
        }
        canceller.start()
        let (failure, elapsed) = await task.value
        #expect(failure?.code == .cancelled, "\(failure?.description ?? "no error")")
        #expect(elapsed < .seconds(60), "the retry wait was not cut short")
        #expect(S3FaultTests.requests(stub).filter { $0.hasPrefix("GET") }.count == 1)
    }

    /// The library's `async` save to `s3://` runs through the store's blocking forms; cancelling
    /// its task reaches the upload in flight, which stops and is aborted: the save throws
    /// `.cancelled`, and the object saved before under that name is untouched.
    @Test func cancellingAnAsyncSaveStopsItsUpload() async throws {
        let (store, bucket) = try await Self.motoStore(partSize: 5 << 20, maxConcurrency: 2)
        defer { store.shutdown() }
        ObjectStores.register(store, for: "s3://\(bucket)")
        defer { ObjectStores.unregister(prefix: "s3://\(bucket)") }
        let url = "s3://\(bucket)/run/model.safetensors"
        let location = try #require(ObjectLocation(url))
        try await saveCheckpoint(try smallState(batch: 1), filename: url)
        let before = try #require(try await store.info(location))
        let uploadedBefore = store.transfers.snapshot.bytesUploaded

        let large = try S3FaultTests.largeState(batch: 2, megabytes: 40)
        let save = Mutex<Task<[String], any Error>?>(nil)
        // Called on the thread that moves the bytes: no wait on the cooperative pool.
        let progress = CheckpointProgress(interval: .zero) { update in
            if update.phase == "uploading", update.completedBytes > 0, !update.isFinished { save.withLock { $0?.cancel() } }
        }
        let task = Task { try await saveCheckpoint(large, filename: url, progress: progress) }
        save.withLock { $0 = task }
        let failure = await #expect(throws: CheckpointError.self) { try await task.value }
        #expect(failure?.code == .cancelled, "\(failure.map(String.init(describing:)) ?? "")")

        let after = try #require(try await store.info(location))
        #expect(after.etag == before.etag && after.size == before.size, "the previous object was replaced")
        let open = try await store.client.send(S3Operation(
            name: "ListMultipartUploads", method: .GET, bucket: bucket, key: nil, query: [("uploads", "")]))
        #expect(!String(decoding: open.bytes, as: UTF8.self).contains("<UploadId>"), "an upload was left open")
        #expect(store.transfers.snapshot.bytesUploaded - uploadedBefore < 30 << 20)
    }
}
