#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Temporary files this library leaves behind only when the process writing them is killed:
/// `.NAME.partial-HOST-PID-RANDOM` (``AtomicFileWriter``), `.NAME.link-HOST-PID-RANDOM` (the
/// latest pointer's new symlink) and `.NAME.download-HOST-PID-RANDOM` (a staged download).
///
/// One is abandoned when it was written on this host (a shared file system may hold other
/// hosts' live saves, whose process ids mean nothing here) by a process that no longer exists.
enum AbandonedTemporaries {
    static let markers = [".partial-", ".link-", ".download-"]

    /// Whether the file named `name` (at `path`) is an abandoned temporary, whatever its final
    /// name.
    static func isAbandoned(_ name: String, at path: String) -> Bool {
        guard name.hasPrefix(".") else { return false }
        for marker in markers {
            // The last occurrence: the final name may itself contain the marker.
            guard let range = name.range(of: marker + AtomicFileWriter.hostName + "-", options: .backwards) else { continue }
            let parts = name[range.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, UInt32(parts[1]) != nil else { continue }
            return Syscall.kill(pid, 0, path: path) != 0 && errno == ESRCH
        }
        return false
    }
}
