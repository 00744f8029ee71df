public import Checkpointing
import Logging
import NIOCore
import Synchronization

/// S3 and S3-compatible object storage for checkpoints, on AsyncHTTPClient.
///
/// Register it once, and `s3://bucket/key` works wherever a path does: `saveCheckpoint`,
/// `loadCheckpoint`, `CheckpointFile/open(_:)`, `CheckpointSaver`'s remote folder, and the
/// `ckpt` commands:
///
/// ```swift
/// import CheckpointingS3
///
/// S3ObjectStore.register()   // settings from the environment and ~/.aws, read on first use
/// try saveCheckpoint(state, filename: "s3://my-bucket/{run_name}/ep{epoch}-ba{batch}.safetensors")
/// ```
///
/// Uploads larger than the part size go up as multipart uploads with parallel parts, within a
/// memory budget; downloads are parallel ranged GETs checked against the object's ETag.
/// Timeouts, connection errors and 5xx answers are retried with exponential backoff and jitter;
/// nothing else is. Failures say what to do: permission denied (403), bucket or key not found,
/// bad credentials, unreachable endpoint.
///
/// Every operation is natively `async` (AsyncHTTPClient's requests awaited, `Task.sleep`
/// between retries, parts as child tasks, file work on NIO's thread pool): from Swift
/// concurrency, `try await store.upload(file:to:)` holds no thread while it waits, and a
/// cancelled task stops at its next request with `.cancelled` (a multipart upload is aborted,
/// so no object appears). The blocking forms that `ObjectStore` requires, and that
/// `saveCheckpoint` and `loadCheckpoint` use, run the same code in a task of their own.
public final class S3ObjectStore: ObjectStore {
    let client: S3Client
    private let reports = Mutex<[S3TransferReport]>([])

    public var configuration: S3Configuration { client.configuration }

    /// Ranged loads read in pieces of the configuration's part size, as many at once as its
    /// `maxConcurrency`, as downloads do.
    public var rangedReads: (pieceSize: Int, parallelRequests: Int) { (configuration.partSize, configuration.maxConcurrency) }

    public init(configuration: S3Configuration) throws(CheckpointError) {
        client = try S3Client(configuration: configuration)
    }

    /// A store configured from the environment and `~/.aws` (see ``AWSEnvironment``).
    public convenience init(environment: AWSEnvironment = AWSEnvironment()) throws(CheckpointError) {
        try self.init(configuration: .fromEnvironment(environment))
    }

    /// Sends every `s3://` URL of this process to a store configured from the environment and
    /// `~/.aws` when one is first used; a configuration error (no credentials, a bad endpoint)
    /// is thrown then, by the operation that needed the store.
    public static func register(environment: AWSEnvironment = AWSEnvironment()) {
        ObjectStores.register(scheme: "s3") { () throws(CheckpointError) -> any ObjectStore in
            try S3ObjectStore(environment: environment)
        }
    }

    /// Closes the store's connections. A store also closes them when it is released.
    public func shutdown() { client.shutdown() }

    /// The bytes this store has moved; `ObjectStores.transfers` counts every store's.
    public var transfers: TransferStatistics { client.transfers }

    /// The transfers this store has made, oldest first (the last 64).
    public var transferReports: [S3TransferReport] { reports.withLock { $0 } }

    private func record(_ report: S3TransferReport) {
        reports.withLock {
            $0.append(report)
            if $0.count > 64 { $0.removeFirst($0.count - 64) }
        }
        logger.debug(
            "\(report.direction.rawValue) \(report.location): \(report.bytes) bytes in \(report.parts) parts of \(report.partSize), \(report.partsInFlight) in flight, \(report.seconds) s")
    }

    // MARK: ObjectStore, natively async

    // Each operation is implemented once, here, as an `async` function; the synchronous
    // requirements below run the same code through `S3Client.blocking`.

    @discardableResult
    public func upload(file path: String, to location: ObjectLocation) async throws(CheckpointError) -> ObjectInfo {
        try Self.check(location)
        let report = try await client.upload(file: path, to: location)
        record(report)
        return ObjectInfo(location: location, size: report.bytes, etag: report.etag)
    }

    @discardableResult
    public func download(_ location: ObjectLocation, to path: String) async throws(CheckpointError) -> ObjectInfo {
        try Self.check(location)
        let (info, report) = try await client.download(location, to: path)
        record(report)
        return info
    }

    public func info(_ location: ObjectLocation) async throws(CheckpointError) -> ObjectInfo? {
        try Self.check(location)
        return try await client.head(location).map {
            ObjectInfo(location: location, size: $0.size, etag: $0.etag, lastModified: $0.lastModified)
        }
    }

    public func list(_ prefix: ObjectLocation, delimiter: String?) async throws(CheckpointError) -> ObjectListing {
        try Self.check(prefix, keyRequired: false)
        var objects: [ObjectInfo] = []
        var folders: [String] = []
        var token: String?
        repeat {
            let page = try await client.listPage(bucket: prefix.bucket, prefix: prefix.key, delimiter: delimiter, continuation: token)
            objects += page.objects
            folders += page.prefixes
            token = page.next
        } while token != nil
        return ObjectListing(objects: objects, commonPrefixes: folders)
    }

    /// Whole objects read into memory are limited to this size.
    static let readLimit = 64 << 20

    public func read(_ location: ObjectLocation, range: Range<Int>?) async throws(CheckpointError) -> [UInt8] {
        try Self.check(location)
        if let range, range.isEmpty { return [] }
        return try await client.get(location, range: range, limit: range?.count ?? Self.readLimit).bytes
    }

    public func read(_ location: ObjectLocation, range: Range<Int>, ifMatch etag: String?) async throws(CheckpointError) -> [UInt8] {
        try Self.check(location)
        if range.isEmpty { return [] }
        return try await client.get(location, range: range, ifMatch: etag, limit: range.count).bytes
    }

    public func write(_ bytes: [UInt8], to location: ObjectLocation) async throws(CheckpointError) {
        try Self.check(location)
        try await client.put(location, body: ByteBuffer(bytes: bytes))
    }

    public func delete(_ location: ObjectLocation) async throws(CheckpointError) {
        try Self.check(location)
        try await client.delete(location)
    }

    // MARK: ObjectStore, blocking

    @discardableResult
    public func upload(file path: String, to location: ObjectLocation) throws(CheckpointError) -> ObjectInfo {
        try client.blocking { () async throws(CheckpointError) in try await self.upload(file: path, to: location) }
    }

    @discardableResult
    public func download(_ location: ObjectLocation, to path: String) throws(CheckpointError) -> ObjectInfo {
        try client.blocking { () async throws(CheckpointError) in try await self.download(location, to: path) }
    }

    public func info(_ location: ObjectLocation) throws(CheckpointError) -> ObjectInfo? {
        try client.blocking { () async throws(CheckpointError) in try await self.info(location) }
    }

    public func list(_ prefix: ObjectLocation, delimiter: String?) throws(CheckpointError) -> ObjectListing {
        try client.blocking { () async throws(CheckpointError) in try await self.list(prefix, delimiter: delimiter) }
    }

    public func read(_ location: ObjectLocation, range: Range<Int>?) throws(CheckpointError) -> [UInt8] {
        try client.blocking { () async throws(CheckpointError) in try await self.read(location, range: range) }
    }

    public func read(_ location: ObjectLocation, range: Range<Int>, ifMatch etag: String?) throws(CheckpointError) -> [UInt8] {
        try client.blocking { () async throws(CheckpointError) in try await self.read(location, range: range, ifMatch: etag) }
    }

    public func write(_ bytes: [UInt8], to location: ObjectLocation) throws(CheckpointError) {
        try client.blocking { () async throws(CheckpointError) in try await self.write(bytes, to: location) }
    }

    public func delete(_ location: ObjectLocation) throws(CheckpointError) {
        try client.blocking { () async throws(CheckpointError) in try await self.delete(location) }
    }

    /// Refuses locations S3 cannot hold before any request is made.
    static func check(_ location: ObjectLocation, keyRequired: Bool = true) throws(CheckpointError) {
        guard location.scheme == "s3" else {
            throw CheckpointError(.invalidArgument, "S3ObjectStore handles s3:// URLs only", path: location.description)
        }
        guard (3...63).contains(location.bucket.count),
            location.bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") })
        else {
            throw CheckpointError(
                .invalidArgument,
                "\"\(location.bucket)\" is not a valid bucket name (3 to 63 lowercase letters, digits, dots and hyphens)",
                path: location.description)
        }
        guard !keyRequired || (!location.key.isEmpty && !location.key.hasSuffix("/")) else {
            throw CheckpointError(.invalidArgument, "names a folder, not an object: add a file name", path: location.description)
        }
        guard location.key.utf8.count <= 1024 else {
            throw CheckpointError(.invalidArgument, "the key is longer than S3's 1024 bytes", path: location.description)
        }
    }
}
