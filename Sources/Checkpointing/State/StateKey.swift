/// A key of a ``StateDict``: a string, or an integer (torch keys optimizer state by parameter index).
public enum StateKey: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral,
    ExpressibleByIntegerLiteral
{
    case string(String)
    case int(Int)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }

    /// The key as it appears in a flattened path, before escaping.
    public var description: String {
        switch self {
        case .string(let string): string
        case .int(let int): String(int)
        }
    }

    /// The key as one component of a flattened path: `/` and `\` are escaped with `\`.
    public var pathComponent: String { StatePath.escape(description) }
}

/// Flattened paths: keys joined by `/` from the root, each key escaped so that
/// a key containing `/` or `\` cannot be mistaken for two levels.
public enum StatePath {
    /// Escapes `/` and `\` in one key with a `\`.
    public static func escape(_ key: String) -> String {
        guard key.contains(where: { $0 == "/" || $0 == "\\" }) else { return key }
        var escaped = ""
        escaped.reserveCapacity(key.utf8.count + 2)
        for character in key {
            if character == "/" || character == "\\" { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    /// Splits a flattened path into its unescaped keys.
    ///
    /// - Throws: ``CheckpointError`` (`.invalidArgument`) when the path ends in a lone `\`.
    public static func split(_ path: String) throws(CheckpointError) -> [String] {
        var components: [String] = []
        var current = ""
        var escaping = false
        for character in path {
            if escaping {
                current.append(character)
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else if character == "/" {
                components.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        guard !escaping else {
            throw CheckpointError(.invalidArgument, "path \"\(path)\" ends in an unpaired escape character \\")
        }
        components.append(current)
        return components
    }

    /// Joins a parent path and one escaped key; `nil` is the root.
    ///
    /// The root is not the empty string: a key `""` at the root has the path `""`, and its
    /// child `x` the path `/x`, which stays distinct from the root's own child `x`.
    public static func join(_ parent: String?, _ component: String) -> String {
        guard let parent else { return component }
        return parent + "/" + component
    }
}
