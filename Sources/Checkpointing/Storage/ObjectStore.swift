public import struct Foundation.Date
import Synchronization

/// An object in an object store, named by a URL such as `s3://bucket/run/ep1-ba100.safetensors`.
///
/// The key is everything after the bucket and its slash, kept as written: `s3://b/a//c` names
/// the key `a//c`. A key that ends in `/` (or is empty) names a prefix, as for listing.
public struct ObjectLocation: Hashable, Sendable, CustomStringConvertible {
    /// The URL scheme, lowercased: `s3`.
    public var scheme: String
    /// The bucket (the URL's authority).
    public var bucket: String
    /// The object's key within the bucket, without a leading slash.
    public var key: String

    public init(scheme: String, bucket: String, key: String) {
        self.scheme = scheme
        self.bucket = bucket
        self.key = key
    }

    /// Parses `scheme://bucket/key`; `nil` for anything else, including local paths and `file://`
    /// URLs, which name local files.
    public init?(_ url: String) {
        guard let separator = url.range(of: "://") else { return nil }
        let scheme = url[..<separator.lowerBound].lowercased()
        guard let first = scheme.first, first.isASCII, first.isLetter,
            scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }),
            scheme != "file"
        else { return nil }
        let rest = url[separator.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let bucket = String(rest[..<slash])
        guard !bucket.isEmpty else { return nil }
        self.init(
            scheme: scheme, bucket: bucket, key: slash == rest.endIndex ? "" : String(rest[rest.index(after: slash)...]))
    }

    public var description: String { "\(scheme)://\(bucket)/\(key)" }

    /// The last component of the key: the object's file name.
    public var name: String { String(key.split(separator: "/", omittingEmptySubsequences: false).last ?? "") }

    /// The object `relative` below this location, which is taken as a folder.
    public func appending(_ relative: String) -> ObjectLocation {
        let trimmed = relative.drop { $0 == "/" }
        let folder = key.isEmpty || key.hasSuffix("/") ? key : key + "/"
        return ObjectLocation(scheme: scheme, bucket: bucket, key: folder + trimmed)
    }
}

/// What an object store reports about one object.
public struct ObjectInfo: Sendable, Equatable {
    public var location: ObjectLocation
    /// The object's size in bytes.
    public var size: Int
    /// The store's entity tag, without quotes (S3: the MD5 of a single-part object's bytes, or of
    /// its parts' MD5s followed by `-` and the part count).
    public var etag: String?
    public var lastModified: Date?

    public init(location: ObjectLocation, size: Int, etag: String? = nil, lastModified: Date? = nil) {
        self.location = location
        self.size = size
        self.etag = etag
        self.lastModified = lastModified
    }
}

/// One level of objects below a prefix.
public struct ObjectListing: Sendable {
    /// The objects directly below the prefix (all below it when listing without a delimiter).
    public var objects: [ObjectInfo]
    /// The "folders" directly below the prefix, as full keys ending in the delimiter.
    public var commonPrefixes: [String]

    public init(objects: [ObjectInfo], commonPrefixes: [String]) {
        self.objects = objects
        self.commonPrefixes = commonPrefixes
    }
}

/// An object store that checkpoints can be saved to and loaded from by URL.
///
/// The core library knows object stores only through this protocol, so it builds and works
/// without any of them; a module such as `CheckpointingS3` implements it and registers itself
/// with ``ObjectStores``. Then `saveCheckpoint`, `loadCheckpoint` and ``CheckpointFile/open(_:)-7qhys``
/// accept `s3://...` wherever they accept a path: a save is written to a local staging file
/// through the usual atomic path and uploaded when it commits; a load downloads to a staging
/// file, verified, then maps it.
///
/// Each operation comes twice. The blocking form, which the library's synchronous save and load
/// paths use, blocks its thread until it is done; implementations must not need the calling
/// thread (or Swift's cooperative pool) to make progress, so a call from any thread, including a
/// task's, cannot deadlock. The `async` form, for Swift concurrency, suspends its task instead:
/// by default it runs the blocking form on the library's own threads; a store whose client is
/// asynchronous (`S3ObjectStore`) implements it natively and stops at its next request when the
/// task is cancelled (throwing `.cancelled`). Stores count what they move in
/// ``ObjectStores/transfers``.
public protocol ObjectStore: Sendable {
    /// Uploads the local file at `path` as the object `location`, which then appears whole or
    /// not at all (a failed upload leaves any previous object of that name as it was).
    @discardableResult
    func upload(file path: String, to location: ObjectLocation) throws(CheckpointError) -> ObjectInfo

    /// Downloads the object into a new local file at `path`, checking its size and content
    /// against what the store recorded; throws `.malformed` for a download that does not match.
    /// On failure `path` may hold a partial file, which the caller removes.
    @discardableResult
    func download(_ location: ObjectLocation, to path: String) throws(CheckpointError) -> ObjectInfo

    /// The object's size and tag, or `nil` when there is no such object (a missing bucket throws).
    func info(_ location: ObjectLocation) throws(CheckpointError) -> ObjectInfo?

    /// The objects whose keys start with `prefix.key`: with a delimiter, one level of them and
    /// the "folders" below; without, all of them. Every page is fetched.
    func list(_ prefix: ObjectLocation, delimiter: String?) throws(CheckpointError) -> ObjectListing

    /// Reads a small object, or a range of bytes of any object; throws `.notFound` when there is
    /// no such object. Implementations may refuse to read a whole large object into memory.
    func read(_ location: ObjectLocation, range: Range<Int>?) throws(CheckpointError) -> [UInt8]

    /// Reads a range of bytes of the object only if it is still the version whose entity tag
    /// is `etag` (`nil`: any version), so the ranges of one load never mix two versions of an
    /// object replaced meanwhile. A store without tags reads as `read(_:range:)` does.
    func read(_ location: ObjectLocation, range: Range<Int>, ifMatch etag: String?) throws(CheckpointError) -> [UInt8]

    /// Stores a small object from memory (a pointer, a ledger).
    func write(_ bytes: [UInt8], to location: ObjectLocation) throws(CheckpointError)

    /// Deletes the object; deleting a missing object succeeds.
    func delete(_ location: ObjectLocation) throws(CheckpointError)

    /// How a load that reads an object in pieces splits its ranged reads: the most bytes one
    /// request asks for and the most requests in flight for one object. The default is 8 MiB
    /// and 8; a store with transfer settings of its own (part size, concurrency) returns those,
    /// so that ranged loads move data as its downloads do.
    var rangedReads: (pieceSize: Int, parallelRequests: Int) { get }

    // MARK: From Swift concurrency

    /// Uploads as `upload(file:to:)` does, suspending the task instead of blocking it.
    @discardableResult
    func upload(file path: String, to location: ObjectLocation) async throws(CheckpointError) -> ObjectInfo

    /// Downloads as `download(_:to:)` does, suspending the task instead of blocking it.
    @discardableResult
    func download(_ location: ObjectLocation, to path: String) async throws(CheckpointError) -> ObjectInfo

    /// The object's size and tag, as `info(_:)` gives them, from Swift concurrency.
    func info(_ location: ObjectLocation) async throws(CheckpointError) -> ObjectInfo?

    /// Lists as `list(_:delimiter:)` does, from Swift concurrency.
    func list(_ prefix: ObjectLocation, delimiter: String?) async throws(CheckpointError) -> ObjectListing

    /// Reads as `read(_:range:)` does, from Swift concurrency.
    func read(_ location: ObjectLocation, range: Range<Int>?) async throws(CheckpointError) -> [UInt8]

    /// Reads a range of one version as `read(_:range:ifMatch:)` does, from Swift concurrency.
    func read(_ location: ObjectLocation, range: Range<Int>, ifMatch etag: String?) async throws(CheckpointError) -> [UInt8]

    /// Stores a small object as `write(_:to:)` does, from Swift concurrency.
    func write(_ bytes: [UInt8], to location: ObjectLocation) async throws(CheckpointError)

    /// Deletes as `delete(_:)` does, from Swift concurrency.
    func delete(_ location: ObjectLocation) async throws(CheckpointError)
}

extension ObjectStore {
    public var rangedReads: (pieceSize: Int, parallelRequests: Int) { (8 << 20, 8) }

    public func read(_ location: ObjectLocation, range: Range<Int>, ifMatch etag: String?) throws(CheckpointError) -> [UInt8] {
        try read(location, range: range)
    }
}

// The `async` forms of a store that implements only the blocking ones: each runs the blocking
// form on the library's own threads, so the waiting holds no thread of the cooperative pool.
extension ObjectStore {
    @discardableResult
    public func upload(file path: String, to location: ObjectLocation) async throws(CheckpointError) -> ObjectInfo {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.upload(file: path, to: location) }
    }

    @discardableResult
    public func download(_ location: ObjectLocation, to path: String) async throws(CheckpointError) -> ObjectInfo {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.download(location, to: path) }
    }

    public func info(_ location: ObjectLocation) async throws(CheckpointError) -> ObjectInfo? {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.info(location) }
    }

    public func list(_ prefix: ObjectLocation, delimiter: String?) async throws(CheckpointError) -> ObjectListing {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.list(prefix, delimiter: delimiter) }
    }

    public func read(_ location: ObjectLocation, range: Range<Int>?) async throws(CheckpointError) -> [UInt8] {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.read(location, range: range) }
    }

    public func read(_ location: ObjectLocation, range: Range<Int>, ifMatch etag: String?) async throws(CheckpointError) -> [UInt8] {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.read(location, range: range, ifMatch: etag) }
    }

    public func write(_ bytes: [UInt8], to location: ObjectLocation) async throws(CheckpointError) {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.write(bytes, to: location) }
    }

    public func delete(_ location: ObjectLocation) async throws(CheckpointError) {
        try await BlockingWorkPool.shared.run { () throws(CheckpointError) in try self.delete(location) }
    }
}

/// The object stores that paths with a URL scheme (`s3://`) are sent to, and the local folder
/// that uploads and downloads are staged in.
///
/// ```swift
/// import CheckpointingS3
/// try S3ObjectStore.register()     // s3:// now works everywhere a path does
/// try saveCheckpoint(state, filename: "s3://bucket/{run_name}/ep{epoch}-ba{batch}.safetensors")
/// ```
public enum ObjectStores {
    /// Makes a store when a path first needs it, so credentials are read only then.
    public typealias Factory = @Sendable () throws(CheckpointError) -> any ObjectStore

    private struct Registry {
        var factories: [String: Factory] = [:]
        var made: [String: any ObjectStore] = [:]
        /// Stores for one bucket or key prefix (`s3://bucket/prefix`), tried longest first.
        var prefixed: [(prefix: String, store: any ObjectStore)] = []
        var stagingFolder: String?
    }

    private static let registry = Mutex(Registry())

    /// Sends every URL with `scheme` to the store that `factory` makes on first use.
    public static func register(scheme: String, factory: @escaping Factory) {
        registry.withLock {
            $0.factories[scheme.lowercased()] = factory
            $0.made[scheme.lowercased()] = nil
        }
    }

    /// Sends every URL that starts with `prefix` (`s3://bucket` or `s3://bucket/some/prefix`) to
    /// `store`, ahead of the store registered for the scheme: for a bucket on another endpoint,
    /// or a test server.
    public static func register(_ store: any ObjectStore, for prefix: String) {
        registry.withLock { registry in
            registry.prefixed.removeAll { $0.prefix == prefix }
            registry.prefixed.append((prefix, store))
            registry.prefixed.sort { $0.prefix.count > $1.prefix.count }
        }
    }

    /// Removes a store registered for `prefix`.
    public static func unregister(prefix: String) {
        registry.withLock { $0.prefixed.removeAll { $0.prefix == prefix } }
    }

    /// The store for `location`.
    ///
    /// - Throws: `.unsupportedFormat` when no store handles its scheme.
    public static func store(for location: ObjectLocation) throws(CheckpointError) -> any ObjectStore {
        let url = location.description
        let result: Result<any ObjectStore, CheckpointError> = registry.withLock { registry in
            if let match = registry.prefixed.first(where: { url.hasPrefix($0.prefix) && boundary(url, $0.prefix) }) {
                return .success(match.store)
            }
            if let made = registry.made[location.scheme] { return .success(made) }
            guard let factory = registry.factories[location.scheme] else {
                return .failure(
                    CheckpointError(
                        .unsupportedFormat,
                        "no object store handles \(location.scheme):// URLs in this program; for s3:// link CheckpointingS3 and call S3ObjectStore.register() (the ckpt tool does)",
                        path: url))
            }
            do throws(CheckpointError) {
                let store = try factory()
                registry.made[location.scheme] = store
                return .success(store)
            } catch {
                return .failure(error.at(path: url))
            }
        }
        return try result.get()
    }

    /// Whether `prefix` ends at a boundary of `url`: `s3://b` matches `s3://b/k`, not `s3://bb/k`.
    private static func boundary(_ url: String, _ prefix: String) -> Bool {
        guard url.count > prefix.count, !prefix.hasSuffix("/") else { return true }
        return url[url.index(url.startIndex, offsetBy: prefix.count)] == "/"
    }

    /// The local folder for staged uploads and downloads: set here, else `CHECKPOINTING_STAGING_DIR`,
    /// else the system's temporary folder. A save to an object store writes the whole file there
    /// before uploading it, and a load downloads the whole file there, so it needs room for the
    /// largest checkpoint (and should not be a RAM-backed `tmpfs` for large ones).
    public static var stagingFolder: String {
        get { registry.withLock { $0.stagingFolder } ?? RemoteStaging.defaultFolder }
        set { registry.withLock { $0.stagingFolder = newValue } }
    }
}
