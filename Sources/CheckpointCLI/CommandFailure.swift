/// A failure a command reports in one line; `ckpt` exits with status 1.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}
