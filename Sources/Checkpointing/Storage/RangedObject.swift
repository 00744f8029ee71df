#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Synchronization

/// An object of an object store read piece by piece: a sparse local file of the object's size,
/// mapped, into which ranged GETs write the pieces asked for, at their offsets.
///
/// The mapping looks like the whole object, so the format parsers read it as they read any
/// file; only the bytes fetched are real (the rest costs neither memory nor disk). The parsers
/// read the index, which is fetched first (``fetch(_:)``); a tensor's bytes, read through its
/// ``TensorBuffer``, are fetched when first read (the mapping's ``MappedFile/lazyContents``),
/// and the ranged loads fetch all the tensors they use at once, in parallel, beforehand. Every
/// GET carries `If-Match` with the ETag the object had when it was opened, so the pieces of
/// one object never mix two versions of it.
///
/// The file lives in ``ObjectStores/stagingFolder`` with its name removed at once: nothing is
/// left behind whatever happens to the process, and its space is freed with the last mapping.
///
/// `@unchecked Sendable`: the descriptor is written only by `pwrite` at disjoint offsets, the
/// list of fetched ranges is behind a mutex, and the mapping's address is set once, before
/// the mapping is handed out.
final class RangedObject: LazyContents, @unchecked Sendable {
    let location: ObjectLocation
    let size: Int
    let etag: String?
    private let store: any ObjectStore
    private let fd: Int32
    /// Where the mapping starts, to tell a tensor's offset in the object from its address.
    private let base = Atomic<Int>(0)
    /// The ranges fetched so far: sorted, disjoint, not touching.
    private let present = Mutex<[Range<Int>]>([])
    /// Why the last fetch on first read failed, for ``decode(_:)``.
    private let failure = Mutex<CheckpointError?>(nil)

    /// Ranges closer than this are fetched as one: a request costs more than a few kilobytes.
    static let mergeGap = 4 << 10

    /// Opens `location` (a HEAD request) and maps it; nothing of its contents is fetched yet.
    ///
    /// - Throws: `.notFound` when there is no such object, or the store's error.
    static func open(_ location: ObjectLocation) throws(CheckpointError) -> (object: RangedObject, mapping: MappedFile) {
        let object = try RangedObject(location)
        let mapping = try MappedFile(descriptor: object.fd, path: location.description, lazyContents: object)
        object.base.store(Int(bitPattern: mapping.bytes.baseAddress), ordering: .releasing)
        return (object, mapping)
    }

    private init(_ location: ObjectLocation) throws(CheckpointError) {
        let store = try ObjectStores.store(for: location)
        guard let info = try store.info(location) else {
            throw CheckpointError(.notFound, "no such object in bucket \"\(location.bucket)\"", path: location.description)
        }
        let folder = ObjectStores.stagingFolder
        try FilePaths.createFolders(folder)
        let path = FilePaths.join(folder, ".\(location.name).ranged-\(AtomicFileWriter.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let fd = try SystemCalls.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600, operation: "creating a staging file")
        SystemCalls.discard(path)
        do {
            try SystemCalls.truncate(fd, to: info.size, path: path)
        } catch {
            SystemCalls.release(fd, path: path)
            throw error
        }
        self.location = location
        self.store = store
        self.fd = fd
        size = info.size
        etag = info.etag
    }

    deinit { SystemCalls.release(fd, path: location.description) }

    /// Where `bytes`, a part of the mapping, lies in the object.
    func range(of bytes: UnsafeRawBufferPointer) -> Range<Int> {
        guard let start = bytes.baseAddress, !bytes.isEmpty else { return 0..<0 }
        let offset = Int(bitPattern: start) - base.load(ordering: .acquiring)
        return offset..<(offset + bytes.count)
    }

    // MARK: LazyContents

    func prepare(_ range: UnsafeRawBufferPointer) -> Bool {
        do {
            try fetch([self.range(of: range)])
            return true
        } catch {
            failure.withLock { $0 = error }
            return false
        }
    }

    func decode(_ ranges: [UnsafeRawBufferPointer]) throws(CheckpointError) {
        if let earlier = failure.withLock({ $0 }) { throw earlier }
        try fetch(ranges.map(range(of:)))
    }

    /// Fetches whatever part of `ranges` is not here yet: ranges are clipped to the object,
    /// merged when close, cut into pieces of at most the store's ``ObjectStore/rangedReads``
    /// piece size (so that pieces arrive in parallel and memory stays bounded) and fetched with
    /// as many requests in flight as it allows.
    ///
    /// - Parameter progress: Reports the bytes fetched (phase `downloading`, over what was not
    ///   here yet), as the pieces arrive.
    func fetch(_ ranges: [Range<Int>], progress: CheckpointProgress? = nil) throws(CheckpointError) {
        let wanted = Self.merged(ranges.map { $0.clamped(to: 0..<size) }.filter { !$0.isEmpty }, gap: Self.mergeGap)
        let missing = present.withLock { present in wanted.flatMap { Self.subtracting(present, from: $0) } }
        let (pieceSize, parallelRequests) = store.rangedReads
        let pieces = missing.flatMap { range in
            stride(from: range.lowerBound, to: range.upperBound, by: max(1, pieceSize)).map { $0..<min(range.upperBound, $0 + max(1, pieceSize)) }
        }
        guard !pieces.isEmpty else { return }
        progress?.begin("downloading", totalBytes: pieces.reduce(0) { $0 + $1.count })
        defer { progress?.finish() }
        // Captured here: the fetching threads do not inherit task-local values.
        let cancellation = CancellationFlag.current
        let queue = WorkQueue(count: pieces.count)
        let group = DispatchGroup()
        for _ in 0..<min(max(1, parallelRequests), pieces.count) {
            group.enter()
            // Threads of their own: each blocks on its request, which must never happen on
            // Swift's cooperative pool, and Dispatch's pool is only as wide as the cores.
            let thread = Thread { [self] in
                defer { group.leave() }
                while let index = queue.next() {
                    do throws(CheckpointError) {
                        try cancellation?.check("downloading", path: location.description)
                        try fetchPiece(pieces[index])
                        progress?.advance(by: pieces[index].count)
                    } catch {
                        queue.fail(error)
                    }
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        if let error = queue.failure { throw error.at(path: location.description) }
    }

    private func fetchPiece(_ range: Range<Int>) throws(CheckpointError) {
        let bytes = try store.read(location, range: range, ifMatch: etag)
        guard bytes.count == range.count else {
            throw CheckpointError(
                .objectStore,
                "the store sent \(bytes.count) bytes for bytes \(range.lowerBound)-\(range.upperBound - 1) of the object; nothing was loaded from it",
                path: location.description)
        }
        try rethrowingCheckpointError {
            try bytes.withUnsafeBytes { try SystemCalls.writeAll(fd, $0, at: range.lowerBound, path: location.description) }
        }
        present.withLock { $0 = Self.merged($0 + [range], gap: 0) }
    }

    /// `ranges` sorted and merged where they overlap or lie at most `gap` apart.
    static func merged(_ ranges: [Range<Int>], gap: Int) -> [Range<Int>] {
        var result: [Range<Int>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = result.last, range.lowerBound <= last.upperBound + gap {
                result[result.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                result.append(range)
            }
        }
        return result
    }

    /// The parts of `range` that none of `present` (sorted, disjoint) covers.
    static func subtracting(_ present: [Range<Int>], from range: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = range.lowerBound
        for have in present where have.upperBound > start && have.lowerBound < range.upperBound {
            if have.lowerBound > start { result.append(start..<have.lowerBound) }
            start = max(start, have.upperBound)
        }
        if start < range.upperBound { result.append(start..<range.upperBound) }
        return result
    }
}
