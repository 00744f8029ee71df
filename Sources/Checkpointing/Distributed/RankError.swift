import Foundation
import SystemPackage

/// A ``CheckpointError`` as one rank sends it to the others, inside the messages the ranks
/// already exchange (a plan, a report, a commit's outcome): its code, message, path, offset,
/// the rank that threw it and the errno behind it, so that rank 3's `ENOSPC` is thrown on
/// rank 0 as rank 3's `ENOSPC`, with rank 3's path, not as a string under another code.
struct RankError: Codable, Sendable, Equatable {
    var code: String
    var message: String
    var path: String?
    var offset: Int?
    /// The rank that threw the error first (a relayed error keeps it).
    var rank: Int
    var errno: Int32?
    /// The description of an underlying error that is not an errno.
    var cause: String?

    /// `error`, thrown on `rank` (or relayed by it: an error that names a rank keeps it).
    init(_ error: CheckpointError, rank: Int) {
        code = error.code.rawValue
        message = error.message
        path = error.path
        offset = error.offset
        self.rank = error.rank ?? rank
        errno = error.systemErrno
        cause = errno == nil ? error.underlying.map { "\($0)" } : nil
    }

    /// The error to throw on the rank that received it.
    var error: CheckpointError {
        var error = CheckpointError(
            CheckpointError.Code(rawValue: code), message, path: path, offset: offset,
            underlying: errno.map { Errno(rawValue: $0) } ?? cause.map(ReportedCause.init))
        error.rank = rank
        return error
    }

    /// The error to throw for the failures the ranks reported (`nil`: that rank succeeded), or
    /// `nil` when none failed: the lowest failed rank's own error, whose message adds `outcome`
    /// (what became of the collective operation) and the other ranks that failed.
    static func combined(_ reports: [RankError?], outcome: String) -> CheckpointError? {
        let failures = reports.compactMap { $0 }
        guard var error = failures.first?.error else { return nil }
        var note = outcome
        let others = failures.dropFirst()
        if !others.isEmpty {
            let listed = others.prefix(3).map { "rank \($0.rank): \($0.error.withoutRank)" }
            let more = others.count > 3 ? "; and \(others.count - 3) more" : ""
            note += "; \(others.count) other rank\(others.count == 1 ? "" : "s") failed too: " + listed.joined(separator: "; ") + more
        }
        error.message += " (\(note))"
        return error
    }

    /// `bytes` (JSON), as `sender` sent them.
    static func decode(_ bytes: some Collection<UInt8>, from sender: Int) throws(CheckpointError) -> RankError {
        do { return try JSONDecoder().decode(RankError.self, from: Data(bytes)) } catch {
            throw CheckpointError(
                .distributed, "rank \(sender) reported an error this rank cannot read (\(error)); do all ranks run the same build?")
        }
    }

    /// These fields as JSON.
    var encoded: [UInt8] {
        // A struct of strings and integers always encodes.
        (try? Array(JSONEncoder().encode(self))) ?? Array(#"{"code":"distributed","message":"unencodable error","rank":\#(rank)}"#.utf8)
    }
}

/// The description of an error another rank reported, standing in for its underlying error.
private struct ReportedCause: Error, Sendable, CustomStringConvertible {
    var description: String
}

extension CheckpointError {
    /// This error without the rank that threw it, for a message that already names the rank.
    fileprivate var withoutRank: CheckpointError {
        var copy = self
        copy.rank = nil
        return copy
    }
}

/// The message one rank broadcasts to say how an operation every rank waits for ended: success
/// with a payload (a path, a list), or the error that ended it.
enum RankOutcome {
    /// `[1] + payload`.
    static func success(_ payload: [UInt8] = []) -> [UInt8] { [1] + payload }

    /// `[0] + ` the error as JSON.
    static func failure(_ error: CheckpointError, rank: Int) -> [UInt8] { [0] + RankError(error, rank: rank).encoded }

    /// The payload of a success that `sender` broadcast, or the error it reported (thrown).
    static func payload(of message: [UInt8], from sender: Int) throws(CheckpointError) -> ArraySlice<UInt8> {
        switch message.first {
        case 1: return message.dropFirst()
        case 0: throw try RankError.decode(message.dropFirst(), from: sender).error
        default:
            throw CheckpointError(.distributed, "rank \(sender) sent an empty or unknown outcome; do all ranks run the same build?")
        }
    }
}
