/// Folder arithmetic that works the same on local paths and object-store URLs, for files that
/// name their neighbours by relative path (a sharded checkpoint's manifest names its shards).
///
/// An object store has no folders: `..` in a key is two dots. So a relative path is resolved
/// here, by components, before it becomes a key.
enum StoragePaths {
    /// The folder of `path`: a local folder, or a URL's key prefix (`s3://b/run/x` → `s3://b/run`).
    static func folder(of path: String) -> String {
        FilePaths.split(path).folder
    }

    /// `path` relative to `folder`; `nil` when one is local and the other remote, or they are in
    /// different buckets, so that no relative path leads from one to the other.
    static func relative(_ path: String, from folder: String) -> String? {
        switch (StoragePath(path), StoragePath(folder)) {
        case (.local(let file), .local(let base)):
            return FilePaths.relative(file, from: base)
        case (.remote(let object), .remote(let base)):
            guard object.scheme == base.scheme, object.bucket == base.bucket else { return nil }
            let target = components(object.key)
            let from = components(base.key)
            var common = 0
            while common < min(target.count - 1, from.count), target[common] == from[common] { common += 1 }
            return (Array(repeating: "..", count: from.count - common) + target[common...]).joined(separator: "/")
        default:
            return nil
        }
    }

    /// `relative` inside `folder`: a local path, or for a URL the key with `.` and `..` resolved
    /// (a `..` above the bucket's root stays at the root).
    static func join(_ folder: String, _ relative: String) -> String {
        guard case .remote(let base) = StoragePath(folder) else { return FilePaths.join(folder, relative) }
        var resolved = components(base.key)
        for component in relative.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..": _ = resolved.popLast()
            default: resolved.append(String(component))
            }
        }
        return ObjectLocation(scheme: base.scheme, bucket: base.bucket, key: resolved.joined(separator: "/")).description
    }

    /// Whether `path` names an object in an object store.
    static func isRemote(_ path: String) -> Bool {
        if case .remote = StoragePath(path) { return true }
        return false
    }

    private static func components(_ key: String) -> [String] {
        key.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }
}
