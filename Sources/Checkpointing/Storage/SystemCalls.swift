#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// Every system call the storage layer makes goes through here, so each failure becomes a
/// ``CheckpointError`` that names the path and says what to do, and `EINTR` is retried.
enum SystemCalls {
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
    static func error(_ operation: String, path: String, errno code: Int32) -> CheckpointError {
        let cause = Errno(rawValue: code)
        let advice: String
        switch code {
        case ENOENT: advice = "the file or folder does not exist"
        case EACCES, EPERM: advice = "permission denied: check the owner and mode of the file and its folder"
        case ENOSPC: advice = "the disk is full: free space or save elsewhere; the previous checkpoint is intact"
        case EDQUOT: advice = "the disk quota is exhausted: free space or save elsewhere"
        case EROFS: advice = "the file system is read-only"
        case EISDIR: advice = "it is a folder, not a file"
        case ENOTDIR: advice = "a component of the path is not a folder"
        case EMFILE, ENFILE: advice = "too many open files: raise the limit (ulimit -n)"
        case EIO: advice = "the device reported an I/O error"
        default: advice = String(describing: cause)
        }
        return CheckpointError(
            code == ENOENT ? .notFound : .io, "\(operation) failed: \(advice)", path: path, underlying: cause)
    }

    /// Writes all of `bytes` at the descriptor's position.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(CheckpointError) {
        var done = 0
        while done < bytes.count {
            // One call moves at most 1 GiB: Linux caps a single write near 2 GiB anyway.
            let length = min(bytes.count - done, 1 << 30)
            let written = try retrying("write", path: path) {
                Glibc.write(fd, bytes.baseAddress! + done, length)
            }
            done += written
        }
    }

    /// Writes all of `bytes` at `offset`, leaving the descriptor's position alone.
    static func writeAll(
        _ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String
    ) throws(CheckpointError) {
        var done = 0
        while done < bytes.count {
            let length = min(bytes.count - done, 1 << 30)
            let written = try retrying("write", path: path) {
                pwrite(fd, bytes.baseAddress! + done, length, off_t(offset + done))
            }
            done += written
        }
    }

    /// Flushes a file or folder to stable storage.
    static func fsync(_ fd: Int32, path: String) throws(CheckpointError) {
        try retrying("fsync", path: path) { Glibc.fsync(fd) }
    }

    /// Opens a folder and flushes it, so a rename or a new entry in it survives a power cut.
    static func fsyncDirectory(_ path: String) throws(CheckpointError) {
        let fd = try retrying("open folder", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// The size of a file, from its descriptor.
    static func fileSize(_ fd: Int32, path: String) throws(CheckpointError) -> Int {
        var info = stat()
        try retrying("stat", path: path) { fstat(fd, &info) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError(.io, "is not a regular file", path: path)
        }
        return Int(info.st_size)
    }
}
