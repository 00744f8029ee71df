#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The library's one door to the operating system: every call by which it creates, writes,
/// flushes, renames, removes, reads or maps a file, makes a folder, lists one to clean it or to
/// find a manifest, or asks whether a temporary file's writer still lives, goes through a
/// wrapper here. (Left to Foundation: existence checks and folder walks that only read, in the
/// saver's search for checkpoints and in Hugging Face folders.)
///
/// Each wrapper has the C function's signature plus the path it concerns, and behaves as the C
/// function does (a result of `-1` or `nil` with `errno` set). Before calling the system it asks
/// ``SyscallFaults`` whether a test wants this call to fail: one atomic load when no test does.
/// The path is what a test's faults are scoped by, so concurrent tests never hit each other's
/// calls; calls made for a hint (`madvise`, `posix_fadvise`) may pass none, and are then never
/// failed.
///
/// The retry and error policy (`EINTR`, messages that name the path and say what to do) is
/// ``SystemCalls``'s, built on these wrappers.
package enum Syscall {
    /// A kind of system call, as ``SyscallFaults`` counts and fails them.
    package enum Kind: String, CaseIterable, Sendable, CustomStringConvertible {
        case open, close, pread, write, pwrite, fsync, ftruncate, fstat, fcntl
        case stat, statvfs, mkdir, rename, unlink, symlink, readlink, opendir, readdir, mkstemp
        case mmap, munmap, madvise, fadvise
        /// `kill(pid, 0)`: whether the process that wrote a temporary file still exists.
        case kill

        package var description: String { rawValue }
    }

    /// The errno a test injects into this call, if any.
    @inline(__always)
    private static func injected(_ kind: Kind, _ path: String?) -> Int32? {
        guard SyscallFaults.isActive, let path else { return nil }
        return SyscallFaults.intercept(kind, path: path)
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 {
        if let code = injected(.open, path) { errno = code; return -1 }
        return Glibc.open(path, flags, mode)
    }

    /// Releases `fd`. Even when a fault is injected the descriptor is released first, as Linux
    /// does whatever `close` reports, so code that wrongly retried it would fail in the tests.
    static func close(_ fd: Int32, path: String) -> Int32 {
        let code = injected(.close, path)
        let result = Glibc.close(fd)
        if let code { errno = code; return -1 }
        return result
    }

    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int, path: String) -> Int {
        if let code = injected(.pread, path) { errno = code; return -1 }
        return Glibc.pread(fd, buffer, count, off_t(offset))
    }

    static func write(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int, path: String) -> Int {
        if let code = injected(.write, path) { errno = code; return -1 }
        return Glibc.write(fd, bytes, count)
    }

    static func pwrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int, _ offset: Int, path: String) -> Int {
        if let code = injected(.pwrite, path) { errno = code; return -1 }
        return Glibc.pwrite(fd, bytes, count, off_t(offset))
    }

    static func fsync(_ fd: Int32, path: String) -> Int32 {
        if let code = injected(.fsync, path) { errno = code; return -1 }
        return Glibc.fsync(fd)
    }

    static func ftruncate(_ fd: Int32, _ size: Int, path: String) -> Int32 {
        if let code = injected(.ftruncate, path) { errno = code; return -1 }
        return Glibc.ftruncate(fd, off_t(size))
    }

    static func fstat(_ fd: Int32, _ info: inout stat, path: String) -> Int32 {
        if let code = injected(.fstat, path) { errno = code; return -1 }
        return Glibc.fstat(fd, &info)
    }

    /// Sets the close-on-exec flag of `fd`.
    static func setCloseOnExec(_ fd: Int32, path: String) -> Int32 {
        if let code = injected(.fcntl, path) { errno = code; return -1 }
        return Glibc.fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    /// `stat` (named apart: `Glibc.stat` names the struct, so a wrapper called `stat` could
    /// not reach the function).
    static func fileStatus(_ path: String, _ info: inout stat) -> Int32 {
        if let code = injected(.stat, path) { errno = code; return -1 }
        return stat(path, &info)
    }

    /// `statvfs`, named apart as ``fileStatus(_:_:)`` is.
    static func fileSystemStatus(_ path: String, _ info: inout statvfs) -> Int32 {
        if let code = injected(.statvfs, path) { errno = code; return -1 }
        return statvfs(path, &info)
    }

    static func mkdir(_ path: String, _ mode: mode_t) -> Int32 {
        if let code = injected(.mkdir, path) { errno = code; return -1 }
        return Glibc.mkdir(path, mode)
    }

    /// Faults are scoped by `destination` (both names lie in one folder wherever the library
    /// renames).
    static func rename(_ source: String, _ destination: String) -> Int32 {
        if let code = injected(.rename, destination) { errno = code; return -1 }
        return Glibc.rename(source, destination)
    }

    static func unlink(_ path: String) -> Int32 {
        if let code = injected(.unlink, path) { errno = code; return -1 }
        return Glibc.unlink(path)
    }

    static func symlink(_ target: String, _ path: String) -> Int32 {
        if let code = injected(.symlink, path) { errno = code; return -1 }
        return Glibc.symlink(target, path)
    }

    /// The target of the symbolic link at `path`, or `nil` (with `errno` set).
    static func readlink(_ path: String) -> String? {
        if let code = injected(.readlink, path) { errno = code; return nil }
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = buffer.withUnsafeMutableBytes { Glibc.readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    static func opendir(_ path: String) -> OpaquePointer? {
        if let code = injected(.opendir, path) { errno = code; return nil }
        return Glibc.opendir(path)
    }

    /// The next name in `directory` (the folder at `path`); `nil` at the end, or on failure with
    /// `errno` set (it is 0 after this call at the end).
    static func readdir(_ directory: OpaquePointer, path: String) -> String? {
        if let code = injected(.readdir, path) { errno = code; return nil }
        errno = 0
        guard let entry = Glibc.readdir(directory) else { return nil }
        // Only up to the name's NUL: glibc packs entries by their real length, so copying the
        // whole 256-byte `d_name` of the last entry can read past the end of its buffer.
        return String(
            cString: (UnsafeRawPointer(entry) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                .assumingMemoryBound(to: CChar.self))
    }

    /// Closes a folder opened by ``opendir(_:)``. Never failed by a test: like `close`, it
    /// releases the stream whatever it reports.
    static func closedir(_ directory: OpaquePointer) {
        Glibc.closedir(directory)
    }

    /// Creates and opens a new file from `template` (ending in `XXXXXX`, replaced in place).
    static func mkstemp(_ template: inout [CChar], folder: String) -> Int32 {
        if let code = injected(.mkstemp, folder) { errno = code; return -1 }
        return template.withUnsafeMutableBufferPointer { Glibc.mkstemp($0.baseAddress!) }
    }

    /// Maps `size` bytes of `fd` read-only and shared; `nil` (with `errno` set) on failure.
    static func mmap(_ fd: Int32, size: Int, path: String) -> UnsafeMutableRawPointer? {
        if let code = injected(.mmap, path) { errno = code; return nil }
        guard let base = Glibc.mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else { return nil }
        return base
    }

    /// Anonymous memory, private, readable and writable; `path` is what it will hold.
    static func mmapAnonymous(size: Int, path: String) -> UnsafeMutableRawPointer? {
        if let code = injected(.mmap, path) { errno = code; return nil }
        guard let base = Glibc.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
            return nil
        }
        return base
    }

    @discardableResult
    static func munmap(_ base: UnsafeMutableRawPointer, _ size: Int, path: String) -> Int32 {
        if let code = injected(.munmap, path) { errno = code; return -1 }
        return Glibc.munmap(base, size)
    }

    @discardableResult
    static func madvise(_ base: UnsafeMutableRawPointer, _ size: Int, _ advice: Int32, path: String? = nil) -> Int32 {
        if let code = injected(.madvise, path) { errno = code; return -1 }
        return Glibc.madvise(base, size, advice)
    }

    /// Like `posix_fadvise`, returns the error number itself rather than setting `errno`.
    @discardableResult
    static func fadvise(_ fd: Int32, offset: Int, length: Int, _ advice: Int32, path: String? = nil) -> Int32 {
        if let code = injected(.fadvise, path) { return code }
        return Glibc.posix_fadvise(fd, off_t(offset), off_t(length), advice)
    }

    /// `path` is the file whose writing process `pid` is asked about (with signal 0).
    static func kill(_ pid: Int32, _ signal: Int32, path: String) -> Int32 {
        if let code = injected(.kill, path) { errno = code; return -1 }
        return Glibc.kill(pid, signal)
    }
}
