/// The one error type of the library.
///
/// Every failure names what happened, where (a path, and a byte offset for parse errors),
/// and, where there is one, what to do about it. Switch on ``code`` to react to a kind of
/// failure; show ``description`` to a person.
public struct CheckpointError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// A file's bytes break the rules of its format (a bad header, a bad offset, truncation).
        public static let malformed = Code(rawValue: "malformed")
        /// A tensor's bytes do not match the checksum recorded when it was saved.
        public static let checksumMismatch = Code(rawValue: "checksum-mismatch")
        /// The file is of a kind this library recognises but does not read or write.
        public static let unsupportedFormat = Code(rawValue: "unsupported-format")
        /// A pickle names a Python global outside the allow-list; it was refused before anything
        /// was built from it (a file that would run code when unpickled naively).
        public static let disallowedGlobal = Code(rawValue: "disallowed-global")
        /// A filename template is invalid: unknown variable, bad format spec, unbalanced braces.
        public static let invalidTemplate = Code(rawValue: "invalid-template")
        /// An argument is invalid (a bad shape, an impossible option combination, ...).
        public static let invalidArgument = Code(rawValue: "invalid-argument")
        /// Loading in strict mode found missing or unexpected model keys.
        public static let keyMismatch = Code(rawValue: "key-mismatch")
        /// The checkpoint tree does not have the layout the operation needs.
        public static let invalidState = Code(rawValue: "invalid-state")
        /// A file-system operation failed (open, write, fsync, rename, mmap, ...).
        public static let io = Code(rawValue: "io")
        /// The path does not exist.
        public static let notFound = Code(rawValue: "not-found")
        /// The processes of a distributed run disagree or a collective failed.
        public static let distributed = Code(rawValue: "distributed")
        /// A checkpoint of that name exists and overwriting was not allowed.
        public static let alreadyExists = Code(rawValue: "already-exists")
        /// The process was asked to stop (SIGTERM); a checkpoint was saved first.
        public static let terminated = Code(rawValue: "terminated")

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

    public var description: String {
        var text = ""
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
