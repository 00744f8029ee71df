import SystemPackage

/// The one error type of the library.
///
/// Every failure names what happened, where (a path, and a byte offset for parse errors),
/// and, where there is one, what to do about it. Switch on ``code`` to react to a kind of
/// failure; show ``description`` to a person.
///
/// Every public function that can fail throws this type (`throws(CheckpointError)`), so a
/// `catch` needs no cast. In a distributed run an error crosses ranks whole: when rank 3 runs
/// out of disk space during a sharded save, every rank throws rank 3's error, with its code
/// (``Code/io``), its path, its ``systemErrno`` (`ENOSPC`) and ``rank`` 3.
public struct CheckpointError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure: every code the library throws is declared here.
    ///
    /// Codes are strings (``rawValue``), stable across releases, and safe to log or to compare
    /// with the codes another process reports.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        // MARK: Reading

        /// A file's bytes break the rules of its format: a bad header, an offset past the end,
        /// a truncated stream, a damaged archive.
        ///
        /// The file is damaged or is not what its name says. Resume from an earlier checkpoint;
        /// the message names the byte offset where reading stopped.
        public static let malformed = Code(rawValue: "malformed")
        /// A tensor's bytes do not match the checksum recorded when it was saved.
        ///
        /// The file was damaged after it was written (a bad disk, a partial copy). Do not trust
        /// it: resume from an earlier checkpoint (autoresume does so by itself).
        public static let checksumMismatch = Code(rawValue: "checksum-mismatch")
        /// The file is of a kind this library recognises but does not read or write (an old
        /// torch format, a codec option it does not implement).
        ///
        /// Convert the file with the tool that wrote it into a format the message names.
        public static let unsupportedFormat = Code(rawValue: "unsupported-format")
        /// A pickle names a Python global outside the allow-list; it was refused before anything
        /// was built from it (a file that would run code when unpickled naively).
        ///
        /// Do not load the file in Python either unless you trust its source; re-save it with
        /// plain tensors and containers.
        public static let disallowedGlobal = Code(rawValue: "disallowed-global")
        /// Reading would exceed a ``ReadingLimits`` bound: nesting too deep, a decompression
        /// bomb, a header or index larger than any real checkpoint's, an archive member larger
        /// than its archive.
        ///
        /// A hostile or damaged file, most often. For a genuine checkpoint that needs more (one
        /// that is almost all zeros expands more than 1000-fold), raise the bound the message
        /// names, in the `limits:` parameter or with the command's flag.
        public static let limitExceeded = Code(rawValue: "limit-exceeded")

        // MARK: Arguments and state

        /// A filename template is invalid: unknown variable, bad format spec, unbalanced braces.
        ///
        /// Fix the template; the message quotes it and names the problem.
        public static let invalidTemplate = Code(rawValue: "invalid-template")
        /// An argument is invalid: a bad shape, an impossible combination of options.
        ///
        /// Fix the call; the message says which argument and why.
        public static let invalidArgument = Code(rawValue: "invalid-argument")
        /// Loading in strict mode found missing or unexpected model keys, or a tensor of another
        /// dtype or shape.
        ///
        /// Check that the checkpoint is of this model; load non-strict to take the keys both
        /// have, or rename keys with `ignoreKeys`.
        public static let keyMismatch = Code(rawValue: "key-mismatch")
        /// The checkpoint tree does not have the layout the operation needs (no `state` dict for
        /// a weights-only save, a timestamp field of the wrong type).
        ///
        /// Load it with ``loadCheckpointTree(_:verifyChecksums:limits:shardPlan:processGroup:progress:)-29crs``,
        /// which takes any tree, or fix the tree before saving.
        public static let invalidState = Code(rawValue: "invalid-state")
        /// A checkpoint of that name exists and overwriting was not allowed.
        ///
        /// Allow overwriting, resume with autoresume, or choose another name or folder.
        public static let alreadyExists = Code(rawValue: "already-exists")
        /// The process was asked to stop (SIGTERM); a checkpoint was saved first.
        ///
        /// Stop the training loop; the next run resumes from that checkpoint.
        public static let terminated = Code(rawValue: "terminated")
        /// The Swift task running the operation was cancelled before it finished.
        ///
        /// Nothing was committed by a cancelled save (the previous checkpoint is intact), and a
        /// cancelled load changed nothing; call it again when the work is wanted.
        public static let cancelled = Code(rawValue: "cancelled")

        // MARK: Storage

        /// A file-system operation failed (open, write, fsync, rename, mmap, ...).
        ///
        /// ``systemErrno`` holds the system's errno and the message what to do about it
        /// (`ENOSPC`: free space or save elsewhere; `EIO`: check the disk).
        public static let io = Code(rawValue: "io")
        /// The path does not exist (a file, a folder, or an object in a store).
        ///
        /// Check the path; a template's variables are filled in the path the error names.
        public static let notFound = Code(rawValue: "not-found")
        /// The object store refused the operation (HTTP 403): the credentials lack a permission.
        ///
        /// Grant the permission the message names on the bucket or prefix.
        public static let permissionDenied = Code(rawValue: "permission-denied")
        /// The object store did not accept the credentials (unknown key, wrong secret, expired
        /// token).
        ///
        /// Refresh the credentials (the environment, `~/.aws/credentials`, the profile).
        public static let badCredentials = Code(rawValue: "bad-credentials")
        /// The object store could not be reached (refused or timed-out connections, after
        /// retries).
        ///
        /// Check the endpoint and the network; nothing was committed.
        public static let unreachable = Code(rawValue: "unreachable")
        /// The object store failed the request (a server error after retries, or a response
        /// that does not make sense).
        ///
        /// Retry later; the message quotes the store's answer.
        public static let objectStore = Code(rawValue: "object-store")

        // MARK: Distributed runs

        /// The processes of a distributed run disagree, a collective failed or timed out, or a
        /// rank sent a message this one cannot read.
        ///
        /// The message says which rank and what; a timeout names the collective that waited.
        /// Check that every rank runs the same build and the same call, and look at the log of
        /// the rank named. (An error another rank threw keeps its own code: see
        /// ``CheckpointError/rank``.)
        public static let distributed = Code(rawValue: "distributed")

        public var description: String { rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What happened and, where possible, what to do.
    public var message: String
    /// The file or folder concerned, if any.
    public var path: String?
    /// The byte offset in ``path`` where a parse error was found, if any.
    public var offset: Int?
    /// The rank of the process of a distributed run that failed, when this error is one that
    /// another process reported to this one (its ``path`` is then on that process's machine);
    /// `nil` for an error of this process.
    public var rank: Int?
    /// The lower-level error that caused this one, if any.
    public var underlying: (any Error & Sendable)?

    public init(
        _ code: Code, _ message: String, path: String? = nil, offset: Int? = nil,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
        self.underlying = underlying
    }

    /// The errno of the failed system call behind this error, if one is (also when another
    /// rank reported the error).
    public var systemErrno: Int32? { (underlying as? Errno)?.rawValue }

    public var description: String {
        var text = ""
        if let rank { text += "rank \(rank): " }
        if let path { text += "\(path): " }
        text += message
        if let offset { text += " (at byte offset \(offset))" }
        if let underlying { text += " [\(underlying)]" }
        return text
    }

    /// Returns a copy of this error that names `path`, unless it already names one.
    func at(path newPath: String) -> CheckpointError {
        var copy = self
        if copy.path == nil { copy.path = newPath }
        return copy
    }
}
