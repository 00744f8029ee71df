import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends the rest of a file with direct I/O (`O_DIRECT`): the bytes go from the process's
/// memory to the disk without passing through the page cache.
///
/// A buffered `write` costs the kernel a page-cache page for every 4 KB (allocated, copied
/// into, tracked by the file system, written back, then dropped): on this project's 2-core VM
/// (ext4), `ckpt bench save` writes 1.49 GB of tensors with 0.42-0.50 s of CPU through the
/// page cache and 0.25-0.38 s with `O_DIRECT` from a staging buffer, copy included, at about
/// the same speed. Buffered writes also leave gigabytes of a checkpoint that nobody reads soon
/// in the page cache, where they push out what the training job does read (its data set).
///
/// Direct I/O needs the memory, the file offset and the length of each write aligned to the
/// device's block. The bytes are therefore gathered in a staging buffer of
/// ``bufferSize`` bytes (aligned to ``alignment``), which a background thread writes while the
/// caller fills a second one, so producing the bytes (compressing them) and writing them
/// overlap as they do with the page cache's writeback. The tail that does not fill a block is
/// written through the ordinary descriptor by ``finish()``.
///
/// A file system that refuses `O_DIRECT` (tmpfs, some network file systems) or a device whose
/// blocks are larger than ``alignment`` is written the ordinary way: ``start(path:fd:at:)``
/// returns `nil`, or the first write that the device refuses with `EINVAL` is redone through
/// the ordinary descriptor and the rest follows it there.
///
/// `@unchecked Sendable`: the background thread only writes the buffer it was handed and
/// touches nothing else but `failure` (a `Mutex`) and `directRefused` (an `Atomic`); the
/// caller waits for it before it reuses that buffer, overwrites bytes in flight, or closes
/// the descriptors.
package final class DirectWriter: @unchecked Sendable {
    /// The alignment of the buffers, offsets and lengths of direct writes: 4096 suits devices
    /// with 512-byte and 4 KB logical blocks.
    static let alignment = 4096
    /// The size of each of the two staging buffers; tests make it small, to write many
    /// buffers of a small file.
    @TaskLocal static var bufferSize = 8 << 20
    /// ``bufferSize`` when this writer started.
    private let bufferSize: Int

    /// The file offset where direct writing starts (a multiple of ``alignment``).
    let start: Int
    private let path: String
    /// The descriptor opened with `O_DIRECT`.
    private let directFD: Int32
    /// The file's ordinary descriptor (the caller's, which it closes): for the tail, for
    /// overwrites of bytes already written, and after a refusal of direct I/O.
    private let fd: Int32
    private var filling: UnsafeMutableRawBufferPointer
    private var spare: UnsafeMutableRawBufferPointer
    /// Bytes in ``filling``.
    private var filled = 0
    /// The file offset of ``filling``'s first byte: every byte before it has been handed to
    /// the background thread.
    private var offset: Int
    private let queue = DispatchQueue(label: "checkpointing.direct-writes")
    private let group = DispatchGroup()
    private let failure = Mutex<CheckpointError?>(nil)
    /// Set when the device refused a direct write (`EINVAL`): the rest goes through ``fd``.
    private let directRefused = Atomic<Bool>(false)
    private var closed = false

    /// Starts direct writing of the file at `path` (open as `fd`) at `offset`, a multiple of
    /// ``alignment`` that is the file's current size; `nil` when the file cannot be opened with
    /// `O_DIRECT` here (the caller goes on writing the ordinary way).
    static func start(path: String, fd: Int32, at offset: Int) -> DirectWriter? {
        precondition(offset % alignment == 0, "direct writing starts at a block boundary")
        guard let flag = directFlag else { return nil }
        // Any failure but an interruption (EINVAL where O_DIRECT is refused) means the page cache.
        guard let directFD = try? SystemCalls.open(path, O_WRONLY | O_CLOEXEC | flag) else { return nil }
        return DirectWriter(path: path, directFD: directFD, fd: fd, at: offset)
    }

    /// Linux's `O_DIRECT`, which Swift does not import (glibc defines it for `_GNU_SOURCE`
    /// only) and whose value depends on the architecture; `nil` elsewhere.
    package static var directFlag: Int32? {
        #if os(Linux) && (arch(x86_64) || arch(i386))
        0o40000
        #elseif os(Linux) && (arch(arm64) || arch(arm))
        0o200000
        #else
        nil
        #endif
    }

    private init(path: String, directFD: Int32, fd: Int32, at offset: Int) {
        self.path = path
        self.directFD = directFD
        self.fd = fd
        start = offset
        self.offset = offset
        bufferSize = Self.bufferSize
        precondition(bufferSize > 0 && bufferSize % Self.alignment == 0, "staging buffers are whole blocks")
        filling = .allocate(byteCount: bufferSize, alignment: Self.alignment)
        spare = .allocate(byteCount: bufferSize, alignment: Self.alignment)
    }

    /// Whether every write so far went to the disk directly (for tests).
    var wroteDirectly: Bool { !directRefused.load(ordering: .relaxed) }

    /// Appends `bytes`; a failure of an earlier background write is reported here.
    func append(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        var done = 0
        while done < bytes.count {
            let take = min(bufferSize - filled, bytes.count - done)
            (filling.baseAddress! + filled).copyMemory(from: bytes.baseAddress! + done, byteCount: take)
            filled += take
            done += take
            if filled == bufferSize { try handOver() }
        }
    }

    /// Gives the full ``filling`` buffer to the background thread, once the previous one is
    /// written, and continues in the other.
    private func handOver() throws(CheckpointError) {
        try waitForWrites()
        swap(&filling, &spare)
        let block = Block(bytes: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(spare)[0..<filled]), at: offset)
        offset += filled
        filled = 0
        queue.async(group: group) { [self] in
            do throws(CheckpointError) {
                try write(block.bytes, at: block.at)
            } catch {
                failure.withLock { $0 = $0 ?? error }
            }
        }
    }

    /// A full buffer handed to the background thread, which the caller leaves alone until
    /// the thread is done with it.
    private struct Block: @unchecked Sendable {
        var bytes: UnsafeRawBufferPointer
        var at: Int
    }

    /// Waits for the background write, and throws its failure, if any.
    private func waitForWrites() throws(CheckpointError) {
        group.wait()
        if let error = failure.withLock({ $0 }) { throw error }
    }

    /// Writes `bytes` at `at` directly, or through the ordinary descriptor for what the device
    /// will not take directly.
    private func write(_ bytes: UnsafeRawBufferPointer, at: Int) throws(CheckpointError) {
        var done = 0
        // Whole blocks directly; a short write (a disk filling up) leaves a remainder that is
        // no longer aligned, written, or refused, the ordinary way.
        while done < bytes.count, done % Self.alignment == 0, !directRefused.load(ordering: .relaxed) {
            let length = (bytes.count - done) / Self.alignment * Self.alignment
            guard length > 0 else { break }
            let result = Syscall.pwrite(directFD, bytes.baseAddress! + done, length, at + done, path: path)
            if result > 0 {
                done += result
                continue
            }
            // Nothing written: the ordinary descriptor writes the rest, or says why it cannot.
            if result == 0 { break }
            let code = errno
            if code == EINTR { continue }
            guard code == EINVAL else { throw SystemCalls.error("write", path: path, errno: code) }
            directRefused.store(true, ordering: .relaxed)
        }
        if done < bytes.count {
            try SystemCalls.writeAll(fd, UnsafeRawBufferPointer(rebasing: bytes[done...]), at: at + done, path: path)
        }
    }

    /// Replaces the bytes at `at` (before the end of what was appended) with `bytes`: in the
    /// staging buffer when they are still there, else in the file, once written.
    func overwrite(_ bytes: UnsafeRawBufferPointer, at: Int) throws(CheckpointError) {
        var bytes = bytes, at = at
        if at < offset {
            let inFile = min(bytes.count, offset - at)
            try waitForWrites()
            try SystemCalls.writeAll(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<inFile]), at: at, path: path)
            bytes = UnsafeRawBufferPointer(rebasing: bytes[inFile...])
            at += inFile
        }
        guard !bytes.isEmpty else { return }
        precondition(at + bytes.count <= offset + filled, "an overwrite lies within what was written")
        (filling.baseAddress! + (at - offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    /// Writes everything appended: the whole blocks directly, the tail through the ordinary
    /// descriptor. The caller then flushes the file (`fsync`).
    func finish() throws(CheckpointError) {
        try waitForWrites()
        let whole = filled / Self.alignment * Self.alignment
        try write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(filling)[0..<whole]), at: offset)
        try SystemCalls.writeAll(fd, UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(filling)[whole..<filled]), at: offset + whole, path: path)
        offset += filled
        filled = 0
        close()
    }

    /// Waits for the background write and releases the direct descriptor and the buffers
    /// (the ordinary descriptor is the caller's).
    func close() {
        guard !closed else { return }
        closed = true
        group.wait()
        SystemCalls.release(directFD, path: path)
        filling.deallocate()
        spare.deallocate()
    }

    deinit { close() }
}
