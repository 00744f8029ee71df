public import Checkpointing
import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What one upload or download did: for benchmarks, logs and tests.
public struct S3TransferReport: Sendable {
    public enum Direction: String, Sendable { case upload, download }

    public var direction: Direction
    public var location: ObjectLocation
    public var bytes: Int
    /// Requests that carried data: 1 for a single PUT or GET, else the parts or ranges.
    public var parts: Int
    public var partSize: Int
    /// The most parts or ranges in flight at once.
    public var partsInFlight: Int
    public var seconds: Double
    /// The object's ETag after the transfer.
    public var etag: String?
    /// How the bytes were checked: against the ETag part by part, or only by size (an ETag
    /// that is not an MD5, or parts of unknown size).
    public var verifiedAgainstETag: Bool
}

/// Multipart uploads and ranged downloads, with parts in parallel.
///
/// Each of a few child tasks takes the next part, reads it from the file into a buffer
/// (uploads) or fetches it into one (downloads), and sends or writes it, awaiting its own
/// request only. The file reads and writes run on NIO's blocking thread pool (as NIOFS does),
/// never on the thread of a task.
extension S3Client {
    /// The part size for an object of `size` bytes: the configured size, raised to a whole
    /// number of MiB when S3's limit of 10,000 parts needs it.
    func partSize(for size: Int) -> Int {
        let mib = 1 << 20
        let needed = (size + 9_999) / 10_000
        return max(configuration.partSize, (needed + mib - 1) / mib * mib)
    }

    /// Uploads the file at `path` as `location`: one PUT up to the part size, else a multipart
    /// upload with parallel parts, each checked against its MD5, aborted on failure or
    /// cancellation.
    func upload(file path: String, to location: ObjectLocation) async throws(CheckpointError) -> S3TransferReport {
        let start = ContinuousClock.now
        let file = try await Self.fileWork(for: location) { () throws(CheckpointError) in try ReadOnlyFile(path: path) }
        defer { file.close() }
        let size = file.size
        let partSize = partSize(for: size)
        let progress = CheckpointProgress.current
        progress?.begin("uploading", totalBytes: size)
        defer { progress?.finish() }
        if size <= partSize {
            let buffer = PartBuffer(capacity: size)
            try await buffer.fill(from: file, at: 0, count: size, for: location)
            let etag = try await put(location, body: buffer.bytes)
            progress?.advance(by: size)
            return S3TransferReport(
                direction: .upload, location: location, bytes: size, parts: 1, partSize: size, partsInFlight: 1,
                seconds: (ContinuousClock.now - start).seconds, etag: etag, verifiedAgainstETag: etag?.count == 32)
        }

        let partCount = (size + partSize - 1) / partSize
        let inFlight = max(1, min(configuration.maxConcurrency, configuration.memoryBudget / partSize, partCount))
        let uploadID = try await createMultipartUpload(location, metadata: [Self.partSizeMetadata: String(partSize)])
        let queue = WorkQueue(count: partCount)
        let results = Mutex([[UInt8]?](repeating: nil, count: partCount))
        let etags = Mutex([String?](repeating: nil, count: partCount))
        await Self.runWorkers(inFlight) {
            let buffer = PartBuffer(capacity: partSize)
            while let index = queue.next() {
                do throws(CheckpointError) {
                    let offset = index * partSize
                    try await buffer.fill(from: file, at: offset, count: min(partSize, size - offset), for: location)
                    let md5 = buffer.bytes.withUnsafeReadableBytes { Array(Insecure.MD5.hash(data: $0)) }
                    let etag = try await self.uploadPart(location, uploadID: uploadID, number: index + 1, body: buffer.bytes, md5: md5)
                    results.withLock { $0[index] = md5 }
                    etags.withLock { $0[index] = etag }
                    progress?.advance(by: buffer.bytes.readableBytes)
                } catch {
                    queue.fail(error)
                }
            }
        }
        if let failure = queue.failure {
            await abandon(location, uploadID: uploadID)
            throw failure
        }
        let partETags = etags.withLock { $0.map { $0 ?? "" } }
        let etag: String?
        do {
            etag = try await completeMultipartUpload(
                location, uploadID: uploadID, parts: partETags.enumerated().map { ($0.offset + 1, $0.element) })
        } catch {
            await abandon(location, uploadID: uploadID)
            throw error
        }
        let digests = results.withLock { $0.compactMap { $0 } }
        let expected = Self.multipartETag(digests)
        if let etag, etag.contains("-"), etag.lowercased() != expected {
            throw CheckpointError(
                .checksumMismatch,
                "the server's ETag for the uploaded object (\(etag)) is not the one its parts make (\(expected)); it is damaged: save again",
                path: location.description)
        }
        return S3TransferReport(
            direction: .upload, location: location, bytes: size, parts: partCount, partSize: partSize,
            partsInFlight: inFlight, seconds: (ContinuousClock.now - start).seconds, etag: etag,
            verifiedAgainstETag: etag?.lowercased() == expected)
    }

    /// Aborts a multipart upload that failed or was cancelled, best effort: a store that is
    /// gone cannot abort, and S3 lifecycle rules expire incomplete uploads; the object itself
    /// never appeared. The abort runs in a task of its own, so a cancelled upload still sends
    /// it; on the bridge's threads, since an unstructured task would otherwise need the
    /// cooperative pool, whose threads may all be waiting in blocking calls for this upload.
    private func abandon(_ location: ObjectLocation, uploadID: String) async {
        await Task(executorPreference: Self.bridgeExecutor) {
            try? await self.abortMultipartUpload(location, uploadID: uploadID)
        }.value
    }

    /// `MD5(part MD5s)-N`: the ETag S3 gives an object uploaded in N parts.
    static func multipartETag(_ partMD5s: [[UInt8]]) -> String {
        SigV4.hex(Insecure.MD5.hash(data: partMD5s.flatMap { $0 })) + "-\(partMD5s.count)"
    }

    /// Downloads `location` into a new file at `path` with parallel ranged GETs.
    ///
    /// Each GET carries `If-Match` with the ETag that HEAD gave, so an object replaced midway
    /// fails instead of mixing versions; each must bring exactly the bytes asked for; and the
    /// bytes are checked against the ETag: with ranges cut at the upload's part boundaries
    /// (recorded at upload, or asked of the server), each range's MD5 is computed as it
    /// arrives; otherwise the file is hashed part by part afterwards.
    func download(_ location: ObjectLocation, to path: String) async throws(CheckpointError) -> (ObjectInfo, S3TransferReport) {
        let start = ContinuousClock.now
        guard let head = try await head(location) else {
            throw CheckpointError(.notFound, "no such object in bucket \"\(location.bucket)\"", path: location.description)
        }
        let size = head.size
        let file = try await Self.fileWork(for: location) { () throws(CheckpointError) in try WritableFile(path: path, size: size) }
        defer { file.close() }

        let plan = try await plan(location, head: head)
        let progress = CheckpointProgress.current
        progress?.begin("downloading", totalBytes: size)
        defer { progress?.finish() }
        let rangeCount = size == 0 ? 0 : (size + plan.rangeSize - 1) / plan.rangeSize
        let inFlight = max(1, min(configuration.maxConcurrency, configuration.memoryBudget / plan.rangeSize, max(rangeCount, 1)))
        let queue = WorkQueue(count: rangeCount)
        let digests = Mutex([[UInt8]?](repeating: nil, count: rangeCount))
        await Self.runWorkers(min(inFlight, max(rangeCount, 1))) {
            while let index = queue.next() {
                do throws(CheckpointError) {
                    let lower = index * plan.rangeSize
                    let range = lower..<min(size, lower + plan.rangeSize)
                    let response = try await self.get(location, range: range, ifMatch: head.etag, limit: range.count)
                    guard response.body.readableBytes == range.count else {
                        throw CheckpointError(
                            .objectStore,
                            "the download is truncated: bytes \(range.lowerBound)-\(range.upperBound - 1) came as \(response.body.readableBytes) bytes; nothing was loaded from it",
                            path: location.description)
                    }
                    try await Self.fileWork(for: location) { () throws(CheckpointError) in try file.write(response.body, at: range.lowerBound) }
                    progress?.advance(by: range.count)
                    if plan.hashWhileDownloading {
                        let md5 = response.body.withUnsafeReadableBytes { Array(Insecure.MD5.hash(data: $0)) }
                        digests.withLock { $0[index] = md5 }
                    }
                } catch {
                    queue.fail(error)
                }
            }
        }
        if let failure = queue.failure { throw failure }

        var verified = false
        if let etag = head.etag, let partSize = plan.etagPartSize {
            let parts: [[UInt8]]
            if plan.hashWhileDownloading {
                parts = digests.withLock { $0.compactMap { $0 } }
            } else {
                parts = try await file.partDigests(size: size, partSize: partSize, tasks: inFlight, for: location)
            }
            let actual = etag.contains("-") ? Self.multipartETag(parts) : SigV4.hex(parts.first ?? Array(Insecure.MD5.hash(data: Data())))
            guard actual == etag.lowercased() else {
                throw CheckpointError(
                    .checksumMismatch,
                    "the downloaded bytes do not match the object's ETag (\(etag), the bytes give \(actual)): they were damaged on the way; nothing was loaded from them",
                    path: location.description)
            }
            verified = true
        } else {
            logger.debug("\(location): the ETag \(head.etag ?? "-") is not an MD5 of known parts; the download is checked by size only")
        }
        let info = ObjectInfo(location: location, size: size, etag: head.etag, lastModified: head.lastModified)
        let report = S3TransferReport(
            direction: .download, location: location, bytes: size, parts: rangeCount, partSize: plan.rangeSize,
            partsInFlight: inFlight, seconds: (ContinuousClock.now - start).seconds, etag: head.etag,
            verifiedAgainstETag: verified)
        return (info, report)
    }

    /// How to cut a download into ranges and check it.
    private struct DownloadPlan {
        var rangeSize: Int
        /// The size of the parts the ETag was computed over, when it is an MD5 of known parts.
        var etagPartSize: Int?
        /// Whether each range is one such part, so its MD5 can be taken as it arrives.
        var hashWhileDownloading: Bool
    }

    private func plan(_ location: ObjectLocation, head: Head) async throws(CheckpointError) -> DownloadPlan {
        let size = head.size
        var etagPartSize: Int?
        if let etag = head.etag?.lowercased() {
            let pieces = etag.split(separator: "-")
            let digest = pieces.first.map(String.init) ?? ""
            let isMD5 = digest.count == 32 && digest.allSatisfy(\.isHexDigit)
            if isMD5 && pieces.count == 1 {
                etagPartSize = max(size, 1)
            } else if isMD5, pieces.count == 2, let parts = Int(pieces[1]), parts > 0 {
                if let recorded = head.recordedPartSize, recorded > 0, (size + recorded - 1) / recorded == parts {
                    etagPartSize = recorded
                } else if let first = try? await self.head(location, partNumber: 1), first.partsCount == parts, first.size > 0,
                    first.size < size, (size + first.size - 1) / first.size == parts
                {
                    etagPartSize = first.size
                }
            }
        }
        // A range is held in memory until written: fetch whole parts only when they are small.
        let largestRange = max(configuration.partSize, min(64 << 20, configuration.memoryBudget))
        if let part = etagPartSize, part <= largestRange {
            return DownloadPlan(rangeSize: part, etagPartSize: part, hashWhileDownloading: true)
        }
        return DownloadPlan(rangeSize: configuration.partSize, etagPartSize: etagPartSize, hashWhileDownloading: false)
    }

    /// Runs `body` in `count` child tasks and returns when every one has finished.
    static func runWorkers(_ count: Int, _ body: @escaping @Sendable () async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<count { group.addTask { await body() } }
        }
    }

    /// Runs blocking file work on NIO's thread pool, so that no task's thread waits on the disk;
    /// `location` is the object transferred, named by the error of a cancelled task.
    static func fileWork<Value: Sendable>(
        for location: ObjectLocation, _ body: @escaping @Sendable () throws(CheckpointError) -> Value
    ) async throws(CheckpointError) -> Value {
        let result: Result<Value, CheckpointError>
        do {
            result = try await NIOThreadPool.singleton.runIfActive { Result { () throws(CheckpointError) -> Value in try body() } }
        } catch is CancellationError {
            throw CheckpointError(.cancelled, "the transfer was cancelled: its task was cancelled", path: location.description)
        } catch {
            throw CheckpointError(
                .invalidState, "NIO's blocking thread pool refused the file work: \(error)", path: location.description)
        }
        return try result.get()
    }
}

/// One transfer worker's buffer for a part, refilled from the file for each part it sends.
///
/// A class, so that the file read on NIO's thread pool writes into the buffer's storage in
/// place (a `ByteBuffer` captured by value would be copied on write). `@unchecked Sendable`:
/// one worker uses it, one step at a time (fill, then send, then fill again).
final class PartBuffer: @unchecked Sendable {
    private(set) var bytes: ByteBuffer

    init(capacity: Int) { bytes = ByteBufferAllocator().buffer(capacity: capacity) }

    /// Replaces the contents with `count` bytes of `file` from `offset`.
    func fill(from file: ReadOnlyFile, at offset: Int, count: Int, for location: ObjectLocation) async throws(CheckpointError) {
        try await S3Client.fileWork(for: location) { () throws(CheckpointError) in try file.read(at: offset, count: count, into: &self.bytes) }
    }
}

/// A local file read by offset from several threads at once.
struct ReadOnlyFile: Sendable {
    let path: String
    let fd: Int32
    let size: Int

    init(path: String) throws(CheckpointError) {
        self.path = path
        fd = try SystemCalls.open(path, O_RDONLY | O_CLOEXEC, operation: "opening the file to upload")
        do {
            size = try SystemCalls.fileSize(fd, path: path)
        } catch {
            SystemCalls.release(fd, path: path)
            throw error
        }
    }

    /// Replaces `buffer`'s contents with `count` bytes from `offset`.
    func read(at offset: Int, count: Int, into buffer: inout ByteBuffer) throws(CheckpointError) {
        buffer.clear()
        var failure: CheckpointError?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            do throws(CheckpointError) {
                let done = try SystemCalls.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<count]), at: offset, path: path)
                if done < count {
                    failure = CheckpointError(.io, "the file got shorter while it was being uploaded", path: path)
                }
                return done
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
    }

    func close() { SystemCalls.release(fd, path: path) }
}

/// A new local file written by offset from several threads at once.
struct WritableFile: Sendable {
    let path: String
    let fd: Int32

    /// Creates the file (replacing any), after checking that `size` bytes fit on its disk.
    init(path: String, size: Int) throws(CheckpointError) {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        if let available = SystemCalls.freeSpace(in: folder.isEmpty ? "." : folder), available < size {
            throw CheckpointError(
                .io,
                "not enough space to download: the object has \(size) bytes and the disk has \(available) free; free space or set CHECKPOINTING_STAGING_DIR to a larger disk",
                path: folder)
        }
        fd = try SystemCalls.open(
            path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600, operation: "creating the download file")
        do {
            try SystemCalls.truncate(fd, to: size, path: path)
        } catch {
            SystemCalls.release(fd, path: path)
            throw error
        }
    }

    func write(_ buffer: ByteBuffer, at offset: Int) throws(CheckpointError) {
        let failure: CheckpointError? = buffer.withUnsafeReadableBytes { raw in
            do throws(CheckpointError) {
                try SystemCalls.writeAll(fd, raw, at: offset, path: path)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    /// The MD5 of each `partSize` slice of the file, computed by `tasks` child tasks (the
    /// reads on NIO's thread pool).
    func partDigests(size: Int, partSize: Int, tasks: Int, for location: ObjectLocation) async throws(CheckpointError) -> [[UInt8]] {
        let count = max(1, (size + partSize - 1) / partSize)
        let queue = WorkQueue(count: count)
        let digests = Mutex([[UInt8]](repeating: [], count: count))
        let reader = try await S3Client.fileWork(for: location) { () throws(CheckpointError) in try ReadOnlyFile(path: path) }
        defer { reader.close() }
        await S3Client.runWorkers(max(1, min(tasks, count))) {
            let buffer = PartBuffer(capacity: 8 << 20)
            while let index = queue.next() {
                var hasher = Insecure.MD5()
                var offset = index * partSize
                let end = min(size, offset + partSize)
                do throws(CheckpointError) {
                    while offset < end {
                        let chunk = min(8 << 20, end - offset)
                        try await buffer.fill(from: reader, at: offset, count: chunk, for: location)
                        buffer.bytes.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                        offset += chunk
                    }
                    let digest = Array(hasher.finalize())
                    digests.withLock { $0[index] = digest }
                } catch {
                    queue.fail(error)
                }
            }
        }
        if let failure = queue.failure { throw failure }
        return digests.withLock { $0 }
    }

    func close() { SystemCalls.release(fd, path: path) }
}
