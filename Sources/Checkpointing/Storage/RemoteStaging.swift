#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Where a path given to the storage layer points: a local file (a plain path or a `file://`
/// URL) or an object in a registered object store (`s3://bucket/key`).
enum StoragePath {
    case local(String)
    case remote(ObjectLocation)

    init(_ path: String) {
        if path.hasPrefix("file://") {
            self = .local(URL(string: path)?.path ?? String(path.dropFirst("file://".count)))
        } else if let location = ObjectLocation(path) {
            self = .remote(location)
        } else {
            self = .local(path)
        }
    }
}

/// Uploads and downloads through local staging files.
///
/// A save to an object store is written whole to a staging file by the usual atomic writer and
/// uploaded when it commits; the object appears whole or not at all, as the store guarantees.
/// A load downloads the whole object to a staging file, which the store verifies, maps it, and
/// removes its name at once: the mapping keeps the bytes until the last tensor is released, and
/// nothing is left behind even if the process is killed later.
enum RemoteStaging {
    /// `CHECKPOINTING_STAGING_DIR`, else the system's temporary folder.
    static var defaultFolder: String {
        if let folder = ProcessInfo.processInfo.environment["CHECKPOINTING_STAGING_DIR"], !folder.isEmpty {
            return folder
        }
        return FileManager.default.temporaryDirectory.path
    }

    /// Downloads `location` into a new staging file and returns its path; the caller removes it.
    static func download(_ location: ObjectLocation) throws(CheckpointError) -> String {
        let store = try ObjectStores.store(for: location)
        let folder = ObjectStores.stagingFolder
        try FilePaths.createFolders(folder)
        let prefix = ".\(location.name).download-\(AtomicFileWriter.hostName)-"
        AtomicFileWriter.removeAbandonedTemporaries(in: folder, prefix: prefix)
        let path = FilePaths.join(folder, prefix + "\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try store.download(location, to: path)
        } catch {
            SystemCalls.discard(path)
            guard error.path == path else { throw error.at(path: location.description) }
            throw CheckpointError(
                error.code,
                "downloading to the staging file \(path) failed (\(error.message)); free space there, or set CHECKPOINTING_STAGING_DIR to a folder with room for the checkpoint",
                path: location.description, underlying: error.underlying)
        }
        return path
    }

    /// Uploads a committed staging file and removes it, whether the upload succeeds or not.
    static func upload(_ path: String, to location: ObjectLocation) throws(CheckpointError) {
        defer { SystemCalls.discard(path) }
        do {
            try ObjectStores.store(for: location).upload(file: path, to: location)
        } catch {
            throw error.at(path: location.description)
        }
    }
}
