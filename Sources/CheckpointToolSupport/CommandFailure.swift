/// A failure the tool reports in one line; `ckpt` exits with status 1.
public struct CommandFailure: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}
