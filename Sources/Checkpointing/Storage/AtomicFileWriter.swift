#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one file so that it appears under its final name complete and durable, or not at all.
///
/// The bytes go to a hidden temporary file in the target folder
/// (`.NAME.partial-HOST-PID-RANDOM`); ``commit()`` flushes it, renames it over the final name
/// and flushes the folder. A crash at any instant leaves either the previous file or the new
/// one under the final name, never a mix; ``abort()`` (or a failed commit) removes the
/// temporary. A temporary left by a killed process is removed by the next save of the same
/// name on the same host, once that process is gone.
///
/// Errors name the final path, not the temporary, and say that nothing was saved; the one
/// exception is a failure to flush the folder after the rename, when the new file is already in
/// place (see ``commit()``).
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
    /// The cancellation of the `async` call that writes, if any, taken when the file is
    /// created (the writes may come from a compressor's threads).
    private let cancellation = CancellationFlag.current

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
        if let expectedSize, let available = SystemCalls.freeSpace(in: folder), available < expectedSize {
            throw CheckpointError(
                .io,
                "not enough space: the checkpoint needs \(expectedSize) bytes and the disk has \(available) free; free space or save elsewhere (nothing was written)",
                path: path)
        }
        let prefix = ".\(name).partial-\(Self.hostName)-"
        Self.removeAbandonedTemporaries(in: folder, prefix: prefix)
        temporaryPath = FilePaths.join(folder, prefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            fd = try SystemCalls.open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o644, operation: "creating a temporary file")
        } catch {
            throw Self.notSaved(error, finalPath: path)
        }
    }

    /// `error`, from the temporary file, as the save reports it: naming the checkpoint and
    /// saying that nothing under its name changed.
    private static func notSaved(_ error: CheckpointError, finalPath: String) -> CheckpointError {
        var reported = error
        reported.path = finalPath
        reported.message += "; the checkpoint was not saved, and the file already under this name, if any, is untouched"
        return reported
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
        for name in (try? SystemCalls.folderEntries(folder)) ?? [] where name.hasPrefix(prefix) {
            let path = FilePaths.join(folder, name)
            guard let pid = name.dropFirst(prefix.count).split(separator: "-").first.flatMap({ Int32($0) }),
                Syscall.kill(pid, 0, path: path) != 0, errno == ESRCH
            else { continue }
            SystemCalls.discard(path)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        guard !bytes.isEmpty else { return }
        try cancellation?.check("saving", path: finalPath)
        do {
            try SystemCalls.writeAll(fd, bytes, path: temporaryPath)
        } catch {
            throw Self.notSaved(error, finalPath: finalPath)
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
            Syscall.fadvise(fd, offset: writebackStart, length: position - writebackStart, Int32(POSIX_FADV_DONTNEED), path: temporaryPath)
            writebackStart = position
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CheckpointError) {
        guard !bytes.isEmpty else { return }
        do {
            try SystemCalls.writeAll(fd, bytes, at: offset, path: temporaryPath)
        } catch {
            throw Self.notSaved(error, finalPath: finalPath)
        }
    }

    /// Makes the file durable and gives it its final name.
    ///
    /// Until the rename, a failure removes the temporary file and leaves the previous file under
    /// the final name, if any, untouched; a failed `fsync` is final, never retried. A save whose
    /// `async` task was cancelled stops here, before the rename, as a failure does. When the
    /// rename succeeded but flushing the folder then fails, the new file is in place, complete
    /// and flushed, but the rename is not yet durable: a power loss could still undo it. That
    /// error says so; the file is left, since removing it could not bring the previous one back.
    func commit() throws(CheckpointError) {
        // The last moment a save may stop: once renamed (or uploaded), it is committed.
        do {
            try cancellation?.check("saving", path: finalPath)
        } catch {
            abort()
            throw error
        }
        if let remote {
            // A staging file is read back at once by the upload: it needs no fsync.
            let closing = fd
            fd = -1
            do {
                try SystemCalls.close(closing, path: temporaryPath)
            } catch {
                abort()
                throw Self.notSaved(error, finalPath: finalPath)
            }
            try RemoteStaging.upload(temporaryPath, to: remote)
            return
        }
        do {
            try SystemCalls.fsync(fd, path: temporaryPath)
            let closing = fd
            fd = -1
            try SystemCalls.close(closing, path: temporaryPath)
            try SystemCalls.rename(temporaryPath, to: finalPath)
        } catch {
            abort()
            throw Self.notSaved(error, finalPath: finalPath)
        }
        do {
            try SystemCalls.fsyncDirectory(FilePaths.split(finalPath).folder)
        } catch {
            throw CheckpointError(
                .io,
                "the new checkpoint was written, flushed and renamed into place, but flushing its folder then failed (\(error.message)): until the folder is flushed, a power loss can undo the rename and bring back the previous file under this name, or none; save again before relying on it",
                path: finalPath, underlying: error.underlying)
        }
    }

    /// Discards the temporary file; the final name is untouched.
    func abort() {
        if fd >= 0 {
            SystemCalls.release(fd, path: temporaryPath)
            fd = -1
        }
        SystemCalls.discard(temporaryPath)
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
        if let isFolder = try SystemCalls.isFolder(folder) {
            guard isFolder else {
                throw CheckpointError(.io, "is not a folder, so a checkpoint cannot be saved in it", path: folder)
            }
            return
        }
        let parent = split(folder).folder
        if parent != folder { try createFolders(parent) }
        try SystemCalls.makeFolder(folder)
        try SystemCalls.fsyncDirectory(parent)
    }
}
