/// Parts of a checkpoint to leave out when saving or loading.
///
/// Either glob patterns over flattened paths from the checkpoint's root
/// (`"state/optimizers/*"`, `"rng"`), as Python's `fnmatch` reads them (`*` also matches `/`,
/// `?` one character, `[...]` a set, `[!...]` its complement), or a closure that edits the tree
/// (an error it throws ends the save or load).
public enum IgnoreKeys: Sendable, ExpressibleByArrayLiteral {
    case globs([String])
    case closure(@Sendable (inout StateValue) throws -> Void)

    public init(arrayLiteral elements: String...) { self = .globs(elements) }

    /// Removes the matching nodes from `tree`; returns the patterns that matched nothing.
    ///
    /// As in Composer, every node has a path (inner dicts and lists too), a matching node is
    /// removed with everything under it, and list indices are those of the tree before removal.
    ///
    /// An error the closure throws is rethrown as is when it is a ``CheckpointError``, else as
    /// one with code ``CheckpointError/Code/invalidArgument`` whose ``CheckpointError/underlying``
    /// it is.
    func apply(to tree: inout StateValue) throws(CheckpointError) -> [String] {
        switch self {
        case .closure(let edit):
            do {
                try edit(&tree)
            } catch let error as CheckpointError {
                throw error
            } catch {
                throw CheckpointError(.invalidArgument, "the ignore-keys closure failed: \(error)", underlying: error)
            }
            return []
        case .globs(let patterns):
            let globs = patterns.map(Glob.init)
            var matched = Array(repeating: false, count: globs.count)
            tree = Self.filter(tree, path: nil, globs: globs, matched: &matched) ?? tree
            return zip(patterns, matched).filter { !$0.1 }.map(\.0)
        }
    }

    /// The node without its matching descendants, or `nil` when the node itself matches.
    private static func filter(
        _ node: StateValue, path: String?, globs: [Glob], matched: inout [Bool]
    ) -> StateValue? {
        var removed = false
        if let path {
            for (index, glob) in globs.enumerated() where glob.matches(path) {
                matched[index] = true
                removed = true
            }
        }
        // Descend even into a removed node, so a pattern that matches only inside it still
        // counts as having matched (no false warning).
        let result: StateValue
        switch node {
        case .dict(let dict):
            var kept = StateDict()
            for (key, value) in dict {
                if let child = filter(value, path: StatePath.join(path, key.pathComponent), globs: globs, matched: &matched) {
                    kept[key] = child
                }
            }
            result = .dict(kept)
        case .list(let elements):
            result = .list(filterElements(elements, path: path, globs: globs, matched: &matched))
        case .tuple(let elements):
            result = .tuple(filterElements(elements, path: path, globs: globs, matched: &matched))
        default:
            result = node
        }
        if removed { return nil }
        return result
    }

    private static func filterElements(
        _ elements: [StateValue], path: String?, globs: [Glob], matched: inout [Bool]
    ) -> [StateValue] {
        elements.enumerated().compactMap { index, element in
            filter(element, path: StatePath.join(path, String(index)), globs: globs, matched: &matched)
        }
    }
}

/// A glob pattern with Python `fnmatch` semantics: `*` any run of characters (`/` included),
/// `?` one character, `[abc]`, `[a-z]`, `[!abc]` sets; no escape character, so `\` in a
/// pattern matches the `\` of an escaped key. An unclosed `[` is a literal, as in Python.
///
/// Hand-written: glibc's `fnmatch` treats `\` as an escape, which would break the escaped keys
/// of flattened paths.
struct Glob: Sendable {
    private enum Token {
        case literal(Character)
        case any
        case anyRun
        case set(negated: Bool, items: [ClosedRange<Character>])
    }

    private let tokens: [Token]

    init(_ pattern: String) {
        let characters = Array(pattern)
        var tokens: [Token] = []
        var index = 0
        while index < characters.count {
            let character = characters[index]
            switch character {
            case "*":
                if case .anyRun? = tokens.last {} else { tokens.append(.anyRun) }
                index += 1
            case "?":
                tokens.append(.any)
                index += 1
            case "[":
                if let (set, next) = Self.parseSet(characters, from: index + 1) {
                    tokens.append(set)
                    index = next
                } else {
                    tokens.append(.literal("["))
                    index += 1
                }
            default:
                tokens.append(.literal(character))
                index += 1
            }
        }
        self.tokens = tokens
    }

    /// Parses a set after its `[`; `nil` when there is no closing `]`.
    private static func parseSet(_ characters: [Character], from start: Int) -> (Token, Int)? {
        var index = start
        var negated = false
        if index < characters.count, characters[index] == "!" {
            negated = true
            index += 1
        }
        var items: [ClosedRange<Character>] = []
        var first = true
        while index < characters.count {
            let character = characters[index]
            if character == "]" && !first { return (.set(negated: negated, items: items), index + 1) }
            first = false
            if index + 2 < characters.count, characters[index + 1] == "-", characters[index + 2] != "]" {
                let upper = characters[index + 2]
                if character <= upper { items.append(character...upper) }
                index += 3
            } else {
                items.append(character...character)
                index += 1
            }
        }
        return nil
    }

    /// Whether the whole of `text` matches.
    func matches(_ text: String) -> Bool {
        let characters = Array(text)
        // Iterative matching with backtracking to the last `*`: linear in practice, no recursion.
        var t = 0, c = 0
        var starToken = -1, starText = 0
        while c < characters.count {
            if t < tokens.count {
                switch tokens[t] {
                case .anyRun:
                    starToken = t
                    starText = c
                    t += 1
                    continue
                case .any:
                    t += 1; c += 1
                    continue
                case .literal(let literal) where literal == characters[c]:
                    t += 1; c += 1
                    continue
                case .set(let negated, let items) where items.contains { $0.contains(characters[c]) } != negated:
                    t += 1; c += 1
                    continue
                default:
                    break
                }
            }
            guard starToken >= 0 else { return false }
            t = starToken + 1
            starText += 1
            c = starText
        }
        while t < tokens.count, case .anyRun = tokens[t] { t += 1 }
        return t == tokens.count
    }
}
