import Checkpointing
import CheckpointingTestSupport
import Foundation
import Testing

@testable import CheckpointingS3

/// Faults: a server that stops mid-upload, truncated and damaged downloads,
/// 5xx answers, 403 answers and an endpoint with nothing behind it. Each gives a clear error,
/// retries only what may pass on a second try, and never leaves a pointer to a missing object.
@Suite(.motoServer) struct S3FaultTests {
    /// A checkpoint of about `megabytes` MB.
    static func largeState(batch: Int, megabytes: Int) throws -> TrainingState {
        var state = try smallState(batch: batch)
        var random = SplitMix64(seed: UInt64(batch))
        state.model["layer.weight"] = .tensor(try Tensor(dtype: .uint8, shape: [megabytes << 20]) { bytes in
            let words = bytes.bindMemory(to: UInt64.self)
            for index in words.indices { words[index] = random.next() }
        })
        return state
    }

    @Test func serverStoppedMidUploadFailsClearlyAndThePointerKeepsNamingAnObjectThatExists() throws {
        let moto = try #require(MotoSuite.server)
        let direct = try makeStore(endpoint: moto.endpoint)
        defer { direct.shutdown() }
        let bucket = "fault-" + UUID().uuidString.prefix(13).lowercased()
        try createBucket(bucket, in: direct)
        // The proxy stops once 12 MB have gone through it: inside the second checkpoint's upload.
        let proxy = try startPython(TCPProxy.script, [String(moto.port), String(12 << 20)], name: "proxy")
        defer { proxy.stop() }
        let viaProxy = try makeStore(endpoint: proxy.endpoint, partSize: 5 << 20, maxConcurrency: 2, maxAttempts: 3)
        defer { viaProxy.shutdown() }
        ObjectStores.register(viaProxy, for: "s3://\(bucket)")
        defer { ObjectStores.unregister(prefix: "s3://\(bucket)") }

        let local = try TemporaryFolder()
        let saver = try CheckpointSaver(options: .init(
            folder: local.path, filename: "ba{batch}.safetensors", saveInterval: "1ba", checkpointsToKeep: 1,
            remoteFolder: "s3://\(bucket)/run", saveOnTermination: false))
        try saver.fitStart(try smallState(batch: 0))
        try saver.batchEnd(try smallState(batch: 1))

        let failure = #expect(throws: CheckpointError.self) {
            try saver.batchEnd(try Self.largeState(batch: 2, megabytes: 24))
        }
        #expect(failure?.code == .unreachable)
        #expect(failure?.path == "s3://\(bucket)/run/ba2.safetensors")
        #expect(failure?.message.contains("S3 endpoint \(proxy.endpoint)") == true)
        #expect(failure?.message.contains("after 3 attempts") == true)
        #expect(failure?.description.contains("\n") == false)
        #expect(proxy.log.contains("proxy: stopping after"))

        // The store itself is fine: the pointer still names the first checkpoint, which is there
        // in full, and the second never appeared.
        let pointer = try direct.read(ObjectLocation("s3://\(bucket)/run/latest-rank0.symlink")!, range: nil)
        #expect(String(decoding: pointer, as: UTF8.self) == "run/ba1.safetensors")
        #expect(try direct.info(ObjectLocation("s3://\(bucket)/run/ba1.safetensors")!) != nil)
        #expect(try direct.info(ObjectLocation("s3://\(bucket)/run/ba2.safetensors")!) == nil)
        let ledger = try direct.read(ObjectLocation("s3://\(bucket)/run/.checkpoints-rank0.json")!, range: nil)
        #expect(String(decoding: ledger, as: UTF8.self).contains("ba1.safetensors"))
        #expect(!String(decoding: ledger, as: UTF8.self).contains("ba2.safetensors"))
        // Locally the unuploaded checkpoint is kept although only one is to be kept.
        #expect(FileManager.default.fileExists(atPath: local.file("ba2.safetensors")))
    }

    /// A stub serving `state`'s checkpoint in `mode`, and a store for it registered for a bucket.
    static func withStub<R>(_ mode: String, _ body: (LoopbackServer, String) throws -> R) throws -> R {
        let folder = try TemporaryFolder()
        try saveCheckpoint(try smallState(batch: 9), filename: folder.file("object.safetensors"))
        let stub = try startPython(S3Stub.script, [mode, folder.file("object.safetensors")], name: "s3-stub")
        defer { stub.stop() }
        let store = try makeStore(endpoint: stub.endpoint, maxAttempts: 3)
        defer { store.shutdown() }
        let bucket = "stub-" + UUID().uuidString.prefix(8).lowercased()
        ObjectStores.register(store, for: "s3://\(bucket)")
        defer { ObjectStores.unregister(prefix: "s3://\(bucket)") }
        return try body(stub, "s3://\(bucket)/run/ba9.safetensors")
    }

    static func requests(_ stub: LoopbackServer) -> [String] {
        stub.log.split(separator: "\n").map(String.init)
    }

    @Test func truncatedDownloadIsDetectedAndNothingIsLoaded() throws {
        try Self.withStub("short") { stub, url in
            let failure = #expect(throws: CheckpointError.self) { try loadCheckpoint(url) }
            #expect(failure?.code == .objectStore)
            #expect(failure?.description.hasPrefix("\(url): the download is truncated:") == true)
            #expect(failure?.message.contains("after 3 attempts") == true)
            // Retried: a truncated answer may be a dropped connection.
            #expect(Self.requests(stub).filter { $0.hasPrefix("GET") }.count == 3)
        }
        try Self.withStub("close") { stub, url in
            let failure = #expect(throws: CheckpointError.self) { try loadCheckpoint(url) }
            #expect(failure?.code == .unreachable)
            #expect(failure?.message.contains("(the connection closed before the whole answer arrived) after 3 attempts") == true)
            #expect(Self.requests(stub).filter { $0.hasPrefix("GET") }.count == 3)
        }
    }

    @Test func damagedDownloadFailsTheETagCheck() throws {
        try Self.withStub("flip") { _, url in
            let failure = #expect(throws: CheckpointError.self) { try CheckpointFile.open(url) }
            #expect(failure?.code == .checksumMismatch)
            #expect(failure?.message.contains("do not match the object's ETag") == true)
        }
    }

    @Test func serverErrorsAreRetriedWithBackoff() throws {
        try Self.withStub("busy") { stub, url in
            let state = try loadCheckpoint(url)
            #expect(state.timestamp.batch == 9)
            #expect(Self.requests(stub).filter { $0.hasPrefix("GET") }.map { $0.split(separator: " ").last! } == ["503", "503", "206"])
        }
    }

    /// A 503's XML body is longer than an 8-byte range: it is still read whole and retried
    /// (it was once refused as "more than the 8 bytes expected").
    @Test func serverErrorsOnSmallRangesAreRetried() throws {
        try Self.withStub("busy") { stub, url in
            let store = try ObjectStores.store(for: try #require(ObjectLocation(url)))
            let bytes = try store.read(try #require(ObjectLocation(url)), range: 0..<8)
            #expect(bytes.count == 8)
            #expect(Self.requests(stub).filter { $0.hasPrefix("GET") }.map { $0.split(separator: " ").last! } == ["503", "503", "206"])
        }
    }

    @Test func forbiddenIsPermissionDeniedAndNotRetried() throws {
        try Self.withStub("forbidden") { stub, url in
            let failure = #expect(throws: CheckpointError.self) { try loadCheckpoint(url) }
            #expect(failure?.code == .permissionDenied)
            #expect(failure?.message.hasPrefix("permission denied (403 AccessDenied) for HeadObject") == true)
            #expect(failure?.message.contains("not found") == false)
            #expect(failure?.message.contains("no such") == false)
            // HEAD, then one byte to learn why; neither retried.
            #expect(Self.requests(stub).count == 2)
        }
    }

    @Test func unreachableEndpointIsReportedInOneLine() throws {
        let port = try LoopbackServer.freePort()
        let store = try makeStore(endpoint: "http://127.0.0.1:\(port)", maxAttempts: 3)
        defer { store.shutdown() }
        ObjectStores.register(store, for: "s3://nowhere-bucket")
        defer { ObjectStores.unregister(prefix: "s3://nowhere-bucket") }
        let failure = #expect(throws: CheckpointError.self) {
            try saveCheckpoint(try smallState(), filename: "s3://nowhere-bucket/ba7.safetensors")
        }
        #expect(failure?.code == .unreachable)
        #expect(
            failure?.message.hasPrefix("cannot reach the S3 endpoint http://127.0.0.1:\(port) (connection refused) after 3 attempts")
                == true)
        #expect(failure?.description.contains("\n") == false)
    }
}
