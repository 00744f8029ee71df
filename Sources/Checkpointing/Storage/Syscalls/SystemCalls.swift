#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// The system calls of the library as throwing functions: each failure becomes a
/// ``CheckpointError`` that names the path and says what to do, and `EINTR` is handled by one
/// policy, here.
///
/// `EINTR` means the call was interrupted by a signal before it took effect, so it is retried
/// wherever a call can be repeated: `pread`, `write` and `pwrite` (nothing was transferred), `open`,
/// `mmap`, `fsync` (Linux does not interrupt it, but POSIX allows it to be, and a
/// new `fsync` does the whole work again), and the calls on names (`rename`, `unlink`, `mkdir`,
/// ...), which POSIX does not let fail with `EINTR` at all but a network or FUSE file system
/// may. Any other error is final: in particular a failed `fsync` is never retried, because
/// Linux drops the dirty pages it could not write and a second `fsync` would report a success
/// for data that never reached the disk.
///
/// `close` is never retried: Linux releases the descriptor even when `close` reports an error,
/// `EINTR` included, so a second `close` could close a file that another thread has just been
/// given the same number for. `EINTR` from `close` therefore counts as done; the durability of
/// a file the library wrote comes from the `fsync` before it. Nor are the calls whose failure
/// changes nothing retried: `munmap` (which Linux does not interrupt) and the hints `madvise`
/// and `posix_fadvise`, which are simply skipped when they fail.
package enum SystemCalls {
    /// Runs `call` until it does not fail with `EINTR`; a negative result throws.
    @discardableResult
    static func retrying<T: BinaryInteger>(
        _ operation: String, path: String, _ call: () -> T
    ) throws(CheckpointError) -> T {
        while true {
            let result = call()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            throw error(operation, path: path, errno: code)
        }
    }

    /// A ``CheckpointError`` for a failed system call, with advice for the common causes.
    package static func error(_ operation: String, path: String, errno code: Int32) -> CheckpointError {
        let cause = Errno(rawValue: code)
        let advice: String
        switch code {
        case ENOENT: advice = "the file or folder does not exist"
        case EACCES, EPERM: advice = "permission denied: check the owner and mode of the file and its folder"
        case ENOSPC: advice = "the disk is full: free space or save elsewhere"
        case EDQUOT: advice = "the disk quota is exhausted: free space or save elsewhere"
        case EROFS: advice = "the file system is read-only"
        case EISDIR: advice = "it is a folder, not a file"
        case ENOTDIR: advice = "a component of the path is not a folder"
        case EMFILE, ENFILE: advice = "too many open files: raise the limit (ulimit -n)"
        case EIO: advice = "the device reported an I/O error: check the disk (dmesg) before trusting files on it"
        case ENOMEM: advice = "not enough memory or address space"
        default: advice = String(describing: cause)
        }
        // ENOTDIR too: no file can exist at a path through a file.
        return CheckpointError(
            code == ENOENT || code == ENOTDIR ? .notFound : .io, "\(operation) failed: \(advice)", path: path,
            underlying: cause)
    }

    // MARK: Descriptors

    /// Opens `path`; `operation` names the attempt in an error ("open", "create", ...).
    package static func open(
        _ path: String, _ flags: Int32, mode: UInt32 = 0, operation: String = "open"
    ) throws(CheckpointError) -> Int32 {
        try retrying(operation, path: path) { Syscall.open(path, flags, mode_t(mode)) }
    }

    /// Releases `fd`, never retrying (see ``SystemCalls``): `EINTR` counts as done, another error
    /// is reported.
    package static func close(_ fd: Int32, path: String) throws(CheckpointError) {
        guard Syscall.close(fd, path: path) != 0 else { return }
        let code = errno
        if code == EINTR { return }
        throw error("close", path: path, errno: code)
    }

    /// Releases `fd` when its errors change nothing: a file only read, or one being discarded.
    package static func release(_ fd: Int32, path: String) {
        _ = Syscall.close(fd, path: path)
    }

    /// Writes some of `bytes` at the descriptor's position (at most 1 GiB: Linux caps a single
    /// write near 2 GiB anyway) and returns how many.
    static func writeSome(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(CheckpointError) -> Int {
        try retrying("write", path: path) { Syscall.write(fd, bytes.baseAddress!, min(bytes.count, 1 << 30), path: path) }
    }

    /// Writes all of `bytes` at the descriptor's position.
    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(CheckpointError) {
        var done = 0
        while done < bytes.count {
            done += try writeSome(fd, UnsafeRawBufferPointer(rebasing: bytes[done...]), path: path)
        }
    }

    /// Writes all of `bytes` at `offset`, leaving the descriptor's position alone.
    package static func writeAll(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String
    ) throws(CheckpointError) {
        var done = 0
        while done < bytes.count {
            let length = min(bytes.count - done, 1 << 30)
            done += try retrying("write", path: path) {
                Syscall.pwrite(fd, bytes.baseAddress! + done, length, offset + done, path: path)
            }
        }
    }

    /// Reads into `buffer` from `offset` until it is full or the file ends; returns the count.
    package static func read(
        _ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String
    ) throws(CheckpointError) -> Int {
        var done = 0
        while done < buffer.count {
            let count = try retrying("read", path: path) {
                Syscall.pread(fd, buffer.baseAddress! + done, buffer.count - done, offset + done, path: path)
            }
            if count == 0 { break }
            done += count
        }
        return done
    }

    /// Sets the file's size, filling with zeros (a sparse hole) or cutting off.
    package static func truncate(_ fd: Int32, to size: Int, path: String) throws(CheckpointError) {
        try retrying("setting the size of", path: path) { Syscall.ftruncate(fd, size, path: path) }
    }

    /// Flushes a file or folder to stable storage; a failure is final (see ``SystemCalls``).
    static func fsync(_ fd: Int32, path: String) throws(CheckpointError) {
        try retrying("flushing to disk (fsync)", path: path) { Syscall.fsync(fd, path: path) }
    }

    /// Opens a folder and flushes it, so a rename or a new entry in it survives a power cut.
    static func fsyncDirectory(_ path: String) throws(CheckpointError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, operation: "opening the folder")
        defer { release(fd, path: path) }
        try fsync(fd, path: path)
    }

    /// The size of a regular file, from its descriptor.
    package static func fileSize(_ fd: Int32, path: String) throws(CheckpointError) -> Int {
        var info = stat()
        try retrying("stat", path: path) { Syscall.fstat(fd, &info, path: path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError(.io, "is not a regular file", path: path)
        }
        return Int(info.st_size)
    }

    /// Maps `size` bytes of `fd` read-only; unmap them with ``Syscall/munmap(_:_:path:)``.
    static func map(_ fd: Int32, size: Int, path: String) throws(CheckpointError) -> UnsafeMutableRawPointer {
        while true {
            if let base = Syscall.mmap(fd, size: size, path: path) { return base }
            let code = errno
            if code != EINTR { throw error("mapping the file into memory (mmap)", path: path, errno: code) }
        }
    }

    /// `size` bytes of zeroed memory for the decoded bytes of `path`; unmap them with
    /// ``Syscall/munmap(_:_:path:)``.
    static func mapMemory(size: Int, path: String) throws(CheckpointError) -> UnsafeMutableRawPointer {
        guard let base = Syscall.mmapAnonymous(size: size, path: path) else {
            throw CheckpointError(
                .io, "allocating \(size) bytes of memory for the decoded checkpoint failed (\(String(cString: strerror(errno))))",
                path: path)
        }
        return base
    }

    /// The bytes free for an unprivileged user on the disk of `folder`, or `nil` when the
    /// system cannot tell (the write itself will then fail cleanly if they do not fit).
    package static func freeSpace(in folder: String) -> Int? {
        var info = statvfs()
        guard (try? retrying("statvfs", path: folder, { Syscall.fileSystemStatus(folder, &info) })) != nil else { return nil }
        return Int(info.f_bavail) &* Int(info.f_frsize)
    }

    /// The whole file at `path`, refused beyond `limit` bytes before anything is allocated.
    package static func readFile(_ path: String, limit: Int) throws(CheckpointError) -> [UInt8] {
        let fd = try open(path, O_RDONLY | O_CLOEXEC)
        defer { release(fd, path: path) }
        let size = try fileSize(fd, path: path)
        guard size <= limit else {
            throw CheckpointError(.limitExceeded, "the file is \(size) bytes, more than the \(limit) expected", path: path)
        }
        var bytes = [UInt8](repeating: 0, count: size)
        let count = try rethrowingCheckpointError {
            try bytes.withUnsafeMutableBytes { (buffer) throws(CheckpointError) in try read(fd, into: buffer, at: 0, path: path) }
        }
        return Array(bytes[..<count])
    }

    // MARK: Names

    /// The names in the folder at `path`, without `.` and `..`.
    static func folderEntries(_ path: String) throws(CheckpointError) -> [String] {
        let directory = try openFolder(path)
        defer { Syscall.closedir(directory) }
        var names: [String] = []
        while true {
            if let name = Syscall.readdir(directory, path: path) {
                if name != "." && name != ".." { names.append(name) }
                continue
            }
            let code = errno
            if code == 0 { return names }
            if code != EINTR { throw error("reading the folder", path: path, errno: code) }
        }
    }

    private static func openFolder(_ path: String) throws(CheckpointError) -> OpaquePointer {
        while true {
            if let directory = Syscall.opendir(path) { return directory }
            let code = errno
            if code != EINTR { throw error("opening the folder", path: path, errno: code) }
        }
    }

    /// Whether `path` exists, and whether it is a folder; `nil` when it does not exist (or
    /// cannot: a component of it is a file).
    static func isFolder(_ path: String) throws(CheckpointError) -> Bool? {
        var info = stat()
        while Syscall.fileStatus(path, &info) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code == ENOENT || code == ENOTDIR { return nil }
            throw error("stat", path: path, errno: code)
        }
        return (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates the folder `path`; one that exists already is fine.
    static func makeFolder(_ path: String) throws(CheckpointError) {
        while Syscall.mkdir(path, 0o755) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code == EEXIST { return }
            throw error("creating the folder", path: path, errno: code)
        }
    }

    static func rename(_ source: String, to destination: String) throws(CheckpointError) {
        try retrying("rename", path: destination) { Syscall.rename(source, destination) }
    }

    static func symlink(_ target: String, at path: String) throws(CheckpointError) {
        try retrying("creating the symbolic link", path: path) { Syscall.symlink(target, path) }
    }

    /// Removes the file at `path`; one already gone is fine.
    ///
    /// - Returns: Whether there was a file to remove.
    @discardableResult
    package static func unlink(_ path: String) throws(CheckpointError) -> Bool {
        while Syscall.unlink(path) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code == ENOENT { return false }
            throw error("removing", path: path, errno: code)
        }
        return true
    }

    /// Removes the file at `path` when its errors change nothing: a temporary being discarded.
    package static func discard(_ path: String) {
        _ = try? unlink(path)
    }
}
