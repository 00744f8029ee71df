import Checkpointing
import CheckpointingTestSupport
import Foundation
import NIOHTTP1
import Testing

@testable import CheckpointingS3

/// Starts one moto server for a whole suite and stops it after the suite's last test; each test
/// makes its own bucket, so tests share nothing but the process.
struct MotoSuite: SuiteTrait, TestScoping {
    @TaskLocal static var server: LoopbackServer?

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let server = try MotoServer.start()
        defer { server.stop() }
        try await Self.$server.withValue(server) { try await function() }
    }
}

extension Trait where Self == MotoSuite {
    /// A moto S3 server on 127.0.0.1 for the suite (`MotoSuite.server`).
    static var motoServer: Self { MotoSuite() }
}

/// The credentials moto accepts when it does not check them.
let testCredentials = AWSCredentials(accessKeyID: "AKIATESTTESTTESTTEST", secretAccessKey: "test-secret-key", source: "the tests")

/// A store on a loopback endpoint, with retries quick enough for tests.
func makeStore(
    endpoint: String, credentials: AWSCredentials = testCredentials, partSize: Int = 5 << 20, maxConcurrency: Int = 4,
    maxAttempts: Int = 3, listPageSize: Int = 1000, readTimeout: Duration = .seconds(30)
) throws -> S3ObjectStore {
    try S3ObjectStore(configuration: S3Configuration(
        endpoint: endpoint, region: "us-east-1", credentials: credentials, partSize: partSize,
        maxConcurrency: maxConcurrency, memoryBudget: 256 << 20,
        retry: .init(maxAttempts: maxAttempts, baseDelay: .milliseconds(20), maxDelay: .milliseconds(200)),
        connectTimeout: .seconds(2), readTimeout: readTimeout, listPageSize: listPageSize))
}

/// A fresh bucket on the suite's moto server with a store registered for it; the store is
/// unregistered and shut down when `body` returns.
func withBucket<R>(
    partSize: Int = 5 << 20, listPageSize: Int = 1000, _ body: (S3ObjectStore, String) throws -> R
) throws -> R {
    let server = try #require(MotoSuite.server, "the suite needs the .motoServer trait")
    let store = try makeStore(endpoint: server.endpoint, partSize: partSize, listPageSize: listPageSize)
    defer { store.shutdown() }
    let bucket = "test-" + UUID().uuidString.prefix(13).lowercased()
    try createBucket(bucket, in: store)
    ObjectStores.register(store, for: "s3://\(bucket)")
    defer { ObjectStores.unregister(prefix: "s3://\(bucket)") }
    return try body(store, bucket)
}

func createBucket(_ bucket: String, in store: S3ObjectStore) throws {
    _ = try store.client.blocking { () async throws(CheckpointError) in
        try await store.client.send(S3Operation(name: "CreateBucket", method: .PUT, bucket: bucket, key: nil))
    }
}

/// A small training state with a few tensors of known values.
func smallState(batch: Int = 7, seed: UInt64 = 1) throws -> TrainingState {
    var random = SplitMix64(seed: seed)
    var state = TrainingState(runName: "s3-run")
    state.model["layer.weight"] = .tensor(try Tensor(shape: [64, 32], scalars: (0..<(64 * 32)).map { _ in Float(random.next() % 1000) / 7 }))
    state.model["layer.bias"] = .tensor(try Tensor(shape: [32], scalars: (0..<32).map { Float($0) }))
    state.timestamp = Timestamp(epoch: 1, batch: batch, sample: batch * 8)
    return state
}

/// The SHA-256 of every tensor's bytes, by flattened path: compares states without comparing arrays.
func tensorDigests(_ tree: StateValue) -> [String: String] {
    Dictionary(uniqueKeysWithValues: tree.tensors.map { ($0.path, $0.tensor.withUnsafeBytes { sha256Hex($0) }) })
}

/// A Python program on 127.0.0.1 for fault injection (`S3Stub.script`, `TCPProxy.script`).
func startPython(_ script: String, _ arguments: [String], name: String) throws -> LoopbackServer {
    try LoopbackServer(python: script, ["{port}"] + arguments, name: name)
}
