import Synchronization

/// The bytes moved to and from object stores, counted by the stores as the bytes cross the
/// network (a retried request counts again): by the whole process in
/// ``ObjectStores/transfers``, and by one store in the store's own (`S3ObjectStore.transfers`).
///
/// Take a ``snapshot`` before an operation and subtract it from one after, to see what the
/// operation cost: `ckpt` reports `bytes_downloaded` this way, and a test can check that a
/// resharding load fetched only the pieces it needed.
///
/// ```swift
/// let before = ObjectStores.transfers.snapshot
/// let state = try loadCheckpoint("s3://bucket/run/ep3-rank0.tar.manifest.json", processGroup: group)
/// let fetched = ObjectStores.transfers.snapshot - before
/// print(fetched.bytesDownloaded)
/// ```
public final class TransferStatistics: Sendable {
    /// The counts at one moment.
    public struct Snapshot: Sendable, Equatable {
        /// Bytes of response bodies received: object contents, and the few bytes of listings
        /// and error answers.
        public var bytesDownloaded = 0
        /// Bytes of request bodies sent: object contents, and the few bytes of commit requests.
        public var bytesUploaded = 0
        /// Requests sent, retries included.
        public var requests = 0

        public init(bytesDownloaded: Int = 0, bytesUploaded: Int = 0, requests: Int = 0) {
            self.bytesDownloaded = bytesDownloaded
            self.bytesUploaded = bytesUploaded
            self.requests = requests
        }

        /// What happened between `earlier` and this snapshot.
        public static func - (later: Snapshot, earlier: Snapshot) -> Snapshot {
            Snapshot(
                bytesDownloaded: later.bytesDownloaded - earlier.bytesDownloaded,
                bytesUploaded: later.bytesUploaded - earlier.bytesUploaded, requests: later.requests - earlier.requests)
        }
    }

    private let downloaded = Atomic<Int>(0)
    private let uploaded = Atomic<Int>(0)
    private let requestCount = Atomic<Int>(0)

    public init() {}

    /// The counts now.
    public var snapshot: Snapshot {
        Snapshot(
            bytesDownloaded: downloaded.load(ordering: .relaxed), bytesUploaded: uploaded.load(ordering: .relaxed),
            requests: requestCount.load(ordering: .relaxed))
    }

    /// Counts `count` bytes received; an object store calls it as the bytes arrive.
    public func didDownload(_ count: Int) { downloaded.add(count, ordering: .relaxed) }

    /// Counts `count` bytes sent; an object store calls it once a request's body is sent.
    public func didUpload(_ count: Int) { uploaded.add(count, ordering: .relaxed) }

    /// Counts one request; an object store calls it for every attempt.
    public func didSendRequest() { requestCount.add(1, ordering: .relaxed) }
}

extension ObjectStores {
    /// What every object store of this process has transferred (stores report to it).
    public static let transfers = TransferStatistics()
}
