#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file mapped read-only into memory.
///
/// Opening maps the file without reading it: pages are read from disk when first touched, so
/// opening a multi-GB checkpoint costs only the pages of its header. Tensors read from the
/// file keep the mapping alive.
///
/// `@unchecked Sendable`: the mapping is read-only and immutable for its whole life, and it is
/// unmapped only in `deinit`, when nothing can reach it any more.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The file's bytes.
    public let bytes: UnsafeRawBufferPointer
    private let mapped: Bool
    /// What keeps the mapping, anonymous memory, after this file.
    private let reused: ReusedMemory?
    /// Whether the mapping is anonymous memory an earlier file used: its pages are there already.
    let isReusedMemory: Bool
    /// The mapping this one is a part of, kept alive by it.
    private let parent: MappedFile?
    /// What decodes the bytes when they are first read (a float-split stream's decoded
    /// file, whose chunks are decoded on demand); `nil` for bytes that are all there.
    let lazyContents: (any LazyContents)?

    /// Maps the file at `path`: a local path, a `file://` URL, or an object in a registered
    /// object store (`s3://...`), which is first downloaded, verified, to a staging file whose
    /// name is removed once it is mapped.
    public convenience init(path: String) throws(CheckpointError) {
        let local: String, staged: Bool
        switch StoragePath(path) {
        case .local(let file): (local, staged) = (file, false)
        case .remote(let location): (local, staged) = (try RemoteStaging.download(location), true)
        }
        defer { if staged { SystemCalls.discard(local) } }
        let fd = try SystemCalls.open(local, O_RDONLY | O_CLOEXEC)
        defer { SystemCalls.release(fd, path: local) }
        try self.init(descriptor: fd, path: path)
    }

    /// A part of another mapping (a member of an uncompressed tar archive), named `path` in
    /// messages.
    init(slice range: Range<Int>, of parent: MappedFile, path: String) {
        self.path = path
        bytes = UnsafeRawBufferPointer(rebasing: parent.bytes[range])
        mapped = false
        reused = nil
        isReusedMemory = false
        self.parent = parent
        lazyContents = parent.lazyContents
    }

    /// Maps the open file `fd` (a decompressed temporary), named `path` in messages; `fd` may
    /// be closed afterwards.
    init(descriptor fd: Int32, path: String, lazyContents: (any LazyContents)? = nil) throws(CheckpointError) {
        self.path = path
        parent = nil
        self.lazyContents = lazyContents
        reused = nil
        isReusedMemory = false
        let size = try SystemCalls.fileSize(fd, path: path)
        guard size > 0 else {
            // mmap refuses length 0; an empty file still needs a valid, empty view.
            bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: 64), count: 0)
            mapped = false
            return
        }
        bytes = UnsafeRawBufferPointer(start: try SystemCalls.map(fd, size: size, path: path), count: size)
        mapped = true
    }

    /// `size` bytes of anonymous memory, named `path` in messages, that `lazyContents` writes
    /// (a float-split stream's decoded bytes, decoded straight into it) before anyone reads
    /// them; read-only to everyone else, as a file's mapping is. The memory may be a mapping
    /// ``ReusedMemory`` kept, holding bytes of an earlier file until `lazyContents` writes them.
    init(anonymousMemory size: Int, path: String, lazyContents: any LazyContents) throws(CheckpointError) {
        self.path = path
        parent = nil
        self.lazyContents = lazyContents
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: 64), count: 0)
            mapped = false
            reused = nil
            isReusedMemory = false
            return
        }
        let memory = ReusedMemory.current
        let taken = try memory.take(size: size, path: path)
        bytes = UnsafeRawBufferPointer(start: taken.base, count: size)
        mapped = true
        reused = memory
        isReusedMemory = taken.reused
    }

    /// Hints that the whole file is about to be read in order, so the kernel reads ahead.
    public func adviseSequentialRead() {
        guard mapped else { return }
        Syscall.madvise(UnsafeMutableRawPointer(mutating: bytes.baseAddress!), bytes.count, MADV_SEQUENTIAL | MADV_WILLNEED, path: path)
    }

    deinit {
        guard mapped else { return }
        let base = UnsafeMutableRawPointer(mutating: bytes.baseAddress!)
        if let reused {
            reused.give(base, size: bytes.count, path: path)
        } else {
            Syscall.munmap(base, bytes.count, path: path)
        }
    }
}
