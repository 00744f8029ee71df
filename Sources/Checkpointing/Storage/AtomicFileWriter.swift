#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one file so that it appears under its final name complete and durable, or not at all
/// (SPEC §2.7).
///
/// The bytes go to a hidden temporary file in the target folder
/// (`.NAME.partial-HOST-PID-RANDOM`); ``commit()`` flushes it, renames it over the final name
/// and flushes the folder. A crash at any instant leaves either the previous file or the new
/// one under the final name, never a mix; ``abort()`` (or a failed commit) removes the
/// temporary. A temporary left by a killed process is removed by the next save of the same
/// name on the same host, once that process is gone.
///
/// A path of an object store (`s3://...`) is written the same way to a temporary file in
/// ``ObjectStores/stagingFolder``, which ``commit()`` uploads and removes (``RemoteStaging``).
final class AtomicFileWriter: SeekableByteSink {
    let finalPath: String
    let temporaryPath: String
    /// The object to upload to on commit, when the path names one.
    private let remote: ObjectLocation?
    private var fd: Int32
    private(set) var position = 0
    /// Where writeback was last started: see ``write(_:)``.
    private var writebackStart = 0
    /// Writeback of what was written is started every this many bytes.
    static let writebackInterval = 64 << 20

    /// Creates the temporary file, and the folders leading to it if needed.
    ///
    /// - Parameter expectedSize: when known, the free space is checked first, so a save that
    ///   cannot fit fails before writing anything. (Space is not reserved with `fallocate`:
    ///   measured on ext4 here, converting the reserved extents made a 1.5 GB durable save
    ///   15-25% slower than the same writes without it.)
    init(path: String, expectedSize: Int? = nil) throws(CheckpointError) {
        let (folder, name): (String, String)
        switch StoragePath(path) {
        case .local(let local):
            (finalPath, remote) = (local, nil)
            (folder, name) = FilePaths.split(local)
        case .remote(let location):
            (finalPath, remote) = (path, location)
            (folder, name) = (ObjectStores.stagingFolder, location.name)
        }
        guard !name.isEmpty else {
            throw CheckpointError(.invalidArgument, "the file name is empty", path: path)
        }
        try FilePaths.createFolders(folder)
        if let expectedSize {
            var info = statvfs()
            if statvfs(folder, &info) == 0 {
                let available = Int(info.f_bavail) &* Int(info.f_frsize)
                guard available >= expectedSize else {
                    throw CheckpointError(
                        .io,
                        "not enough space: the checkpoint needs \(expectedSize) bytes and the disk has \(available) free; free space or save elsewhere (nothing was written)",
                        path: path)
                }
            }
        }
        let prefix = ".\(name).partial-\(Self.hostName)-"
        Self.removeAbandonedTemporaries(in: folder, prefix: prefix)
        temporaryPath = FilePaths.join(folder, prefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let temporaryPath = temporaryPath
        fd = try SystemCalls.retrying("create", path: temporaryPath) {
            open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
    }

    /// This host's name, so a temporary is only ever judged abandoned by a process on the host
    /// whose process ids it carries (a shared file system may hold other hosts' live saves).
    static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// Removes `prefix`-named temporaries whose writing process no longer exists.
    static func removeAbandonedTemporaries(in folder: String, prefix: String) {
        guard let directory = opendir(folder) else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            // Only up to the name's NUL: glibc packs entries by their real length, so copying the
            // whole 256-byte `d_name` of the last entry can read past the end of its buffer.
            let name = String(
                cString: (UnsafeRawPointer(entry) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                    .assumingMemoryBound(to: CChar.self))
            guard name.hasPrefix(prefix),
                let pid = name.dropFirst(prefix.count).split(separator: "-").first.flatMap({ Int32($0) }),
                kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            unlink(FilePaths.join(folder, name))
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        guard !bytes.isEmpty else { return }
        do {
            try SystemCalls.writeAll(fd, bytes, path: temporaryPath)
        } catch {
            throw error.at(path: finalPath)
        }
        position += bytes.count
        if position - writebackStart >= Self.writebackInterval {
            // Start writing these pages to disk now, while the rest of the file is produced
            // (compression keeps the cores busy for seconds), so commit's fsync waits only for
            // the tail rather than for the whole file: the kernel would otherwise hold every
            // page until the fsync (the dirty-page threshold is gigabytes on a large machine).
            // On Linux, DONTNEED starts writeback of the range's dirty pages without waiting
            // (sync_file_range is not visible to Swift). Only a hint: failures show at fsync.
            // Measured here on 1.49 GB (medians of 4 interleaved runs, with / without): native
            // save 1.0 / 1.4 s, .pt.zst 1.8 / 1.9 s, .pt.lz4 2.7 / 3.7 s.
            _ = posix_fadvise(fd, off_t(writebackStart), off_t(position - writebackStart), Int32(POSIX_FADV_DONTNEED))
            writebackStart = position
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        guard !bytes.isEmpty else { return }
        try SystemCalls.writeAll(fd, bytes, at: offset, path: temporaryPath)
    }

    /// Makes the file durable and gives it its final name.
    ///
    /// On failure the temporary file is removed and the previous file under the final name, if
    /// any, is untouched.
    func commit() throws(CheckpointError) {
        if let remote {
            // A staging file is read back at once by the upload: it needs no fsync.
            let closing = fd
            fd = -1
            guard close(closing) == 0 else {
                abort()
                throw SystemCalls.error("close", path: temporaryPath, errno: errno)
            }
            try RemoteStaging.upload(temporaryPath, to: remote)
            return
        }
        do {
            try SystemCalls.fsync(fd, path: temporaryPath)
            let closing = fd
            fd = -1
            try SystemCalls.retrying("close", path: temporaryPath) { close(closing) }
            let temporaryPath = temporaryPath, finalPath = finalPath
            try SystemCalls.retrying("rename", path: finalPath) { rename(temporaryPath, finalPath) }
        } catch {
            abort()
            throw error
        }
        try SystemCalls.fsyncDirectory(FilePaths.split(finalPath).folder)
    }

    /// Discards the temporary file; the final name is untouched.
    func abort() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temporaryPath)
    }

    deinit {
        if fd >= 0 { abort() }
    }
}

/// Path helpers for local files.
enum FilePaths {
    /// Splits a path into its folder (`.` when there is none) and its last component.
    static func split(_ path: String) -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let folder = String(path[..<slash])
        return (folder.isEmpty ? "/" : folder, String(path[path.index(after: slash)...]))
    }

    static func join(_ folder: String, _ name: String) -> String {
        folder == "." ? name : (folder.hasSuffix("/") ? folder + name : folder + "/" + name)
    }

    /// Creates `folder` and its missing parents, flushing each parent so the new entries are
    /// durable before a file inside them is committed.
    static func createFolders(_ folder: String) throws(CheckpointError) {
        var info = stat()
        if stat(folder, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw CheckpointError(.io, "is not a folder, so a checkpoint cannot be saved in it", path: folder)
            }
            return
        }
        let parent = split(folder).folder
        if parent != folder { try createFolders(parent) }
        if mkdir(folder, 0o755) != 0 && errno != EEXIST {
            throw SystemCalls.error("creating the folder", path: folder, errno: errno)
        }
        try SystemCalls.fsyncDirectory(parent)
    }
}
