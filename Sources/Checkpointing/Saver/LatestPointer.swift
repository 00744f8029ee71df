#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The pointer to a run's newest checkpoint, kept two ways so it works everywhere:
/// a relative symlink (what Composer and people use) and a small pointer file `NAME.pointer`
/// holding the same relative path (for file systems and copies that lose symlinks). Both are
/// replaced atomically: a reader sees the old target or the new one, never neither.
enum LatestPointer {
    static let pointerSuffix = ".pointer"

    /// Points `linkPath` at `target` (both absolute or both relative to the working folder).
    static func update(_ linkPath: String, to target: String) throws(CheckpointError) {
        let relative = FilePaths.relative(target, from: FilePaths.split(linkPath).folder)
        let (folder, name) = FilePaths.split(linkPath)
        try FilePaths.createFolders(folder)
        // Named as the atomic writer names its temporaries, so one killed here is found and
        // removed by the saver's next start (``AbandonedTemporaries``).
        let temporary = FilePaths.join(
            folder, ".\(name).link-\(AtomicFileWriter.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try SystemCalls.symlink(relative, at: temporary)
        do {
            try SystemCalls.rename(temporary, to: linkPath)
        } catch {
            SystemCalls.discard(temporary)
            throw error
        }
        try writeFileAtomically(Array((relative + "\n").utf8), to: linkPath + pointerSuffix)
        try SystemCalls.fsyncDirectory(folder)
    }

    /// The checkpoint the pointer names, from the symlink or else the pointer file; `nil` when
    /// there is neither.
    static func target(of linkPath: String) -> String? {
        let folder = FilePaths.split(linkPath).folder
        if let relative = Syscall.readlink(linkPath) {
            return relative.hasPrefix("/") ? relative : FilePaths.join(folder, relative)
        }
        if let data = try? SystemCalls.readFile(linkPath + pointerSuffix, limit: 1 << 20) {
            let relative = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !relative.isEmpty else { return nil }
            return relative.hasPrefix("/") ? relative : FilePaths.join(folder, relative)
        }
        return nil
    }
}
