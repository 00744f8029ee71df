import Foundation

/// A checkpoint file name pattern such as `ep{epoch}-ba{batch}-rank{rank}.pt`.
///
/// Composer formats these patterns with Python's `str.format`, and runs configured for Composer
/// must produce the same names here, so fields and format specs (`{epoch:03d}`,
/// `{total_wct:.1f}`) mean exactly what they mean in Python. Unlike Python, which only finds a
/// misspelt variable or a bad spec when the first checkpoint is saved, hours into a run, every
/// problem is reported when the template is created, and ``render(_:)`` cannot fail.
public struct FilenameTemplate: Sendable, Hashable, CustomStringConvertible {
    /// A value a pattern can name in braces, spelt as in Composer.
    public enum Variable: String, CaseIterable, Sendable {
        /// The name of the training run.
        case runName = "run_name"
        /// The global rank of the process that writes the file.
        case rank
        /// The rank of the process within its node.
        case localRank = "local_rank"
        /// The number of processes in the run.
        case worldSize = "world_size"
        /// The number of processes on this node.
        case localWorldSize = "local_world_size"
        /// The rank of this node.
        case nodeRank = "node_rank"
        /// The current epoch.
        case epoch
        /// The number of batches trained so far.
        case batch
        /// The number of batches trained in the current epoch.
        case batchInEpoch = "batch_in_epoch"
        /// The number of samples trained so far.
        case sample
        /// The number of samples trained in the current epoch.
        case sampleInEpoch = "sample_in_epoch"
        /// The number of tokens trained so far.
        case token
        /// The number of tokens trained in the current epoch.
        case tokenInEpoch = "token_in_epoch"
        /// Seconds of wall-clock training time so far, a Python float.
        case totalWct = "total_wct"
        /// Seconds of wall-clock training time in the current epoch, a Python float.
        case epochWct = "epoch_wct"
        /// Seconds of wall-clock time of the current batch, a Python float.
        case batchWct = "batch_wct"

        /// The Python type Composer passes for this variable, which decides the legal specs.
        var kind: FormatSpec.Kind {
            switch self {
            case .runName: .string
            case .totalWct, .epochWct, .batchWct: .float
            default: .integer
            }
        }
    }

    private enum Segment: Hashable, Sendable {
        case literal(String)
        case field(Variable, FormatSpec)
    }

    /// The pattern as written, kept for messages and for ``description``.
    public let pattern: String
    /// The variables the pattern uses.
    ///
    /// Callers check this to learn what a name depends on: a name without `{rank}`, for
    /// example, is the same on every rank, so only one rank may write it.
    public let variables: Set<Variable>
    private let segments: [Segment]

    /// Parses and validates `pattern`.
    ///
    /// - Parameters:
    ///   - pattern: Text with `{variable}` or `{variable:spec}` fields; `{{` and `}}` stand for
    ///     literal braces. It may contain folders, such as `{run_name}/checkpoints/ep{epoch}.pt`.
    ///   - allowedVariables: The variables that have a value where the name will be rendered;
    ///     naming any other is an error now rather than a wrong name later.
    /// - Throws: ``CheckpointError`` with code ``CheckpointError/Code/invalidTemplate`` that
    ///   quotes the offending text: an unknown or disallowed variable (listing the allowed ones),
    ///   a bad spec or one that does not suit the variable's type, a single `{` or `}`, an empty
    ///   `{}`, a positional field such as `{0}`, attribute or index access such as `{epoch.x}`, a
    ///   conversion such as `{run_name!r}`, a nested field such as `{epoch:{width}}`, or a `/`
    ///   fill such as `{epoch:/>5}` (Python pads with it; here it would pad with folders).
    public init(
        _ pattern: String, allowedVariables: Set<Variable> = Set(Variable.allCases)
    ) throws(CheckpointError) {
        self.pattern = pattern
        segments = try Self.segments(of: pattern, allowed: allowedVariables)
        variables = Set(segments.compactMap { segment in
            if case .field(let variable, _) = segment { variable } else { nil }
        })
    }

    /// Whether the pattern uses `variable`.
    public func contains(_ variable: Variable) -> Bool {
        variables.contains(variable)
    }

    /// The file name for `values`, as Composer's `pattern.format(**values)` would give it.
    public func render(_ values: FilenameValues) -> String {
        segments.map { segment in
            switch segment {
            case .literal(let text): text
            case .field(let variable, let spec): spec.format(values[variable])
            }
        }.joined()
    }

    /// The path for `values`, as ``render(_:)`` gives it, refusing one that cannot name a
    /// checkpoint: a field that expands to nothing (an empty `{run_name}`, which would turn
    /// `{run_name}/checkpoints` into `/checkpoints` or `{run_name}.pt` into the hidden `.pt`),
    /// and, for a file, a last component that is empty or starts with `.` (only an extension,
    /// such as `.pt`, or a hidden name that the library's own temporaries could take).
    ///
    /// - Parameters:
    ///   - values: The values of the template's variables.
    ///   - isFolder: Whether the path names a folder, whose last component is not checked.
    /// - Throws: ``CheckpointError`` with code ``CheckpointError/Code/invalidTemplate`` naming the
    ///   field or the name, and what to change.
    public func renderPath(_ values: FilenameValues, isFolder: Bool = false) throws(CheckpointError) -> String {
        for case .field(let variable, let spec) in segments where spec.format(values[variable]).isEmpty {
            let advice =
                variable == .runName
                ? "the run has no name: set the state's run name (TrainingState.runName) or leave {run_name} out of the template"
                : "give it a value or leave it out of the template"
            throw Self.invalid("{\(variable.rawValue)} in template \"\(pattern)\" expands to nothing: \(advice)")
        }
        let path = render(values)
        guard !isFolder else { return path }
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        if name.isEmpty {
            throw Self.invalid("template \"\(pattern)\" renders to \"\(path)\", which names a folder, not a file: add a file name")
        }
        if name.hasPrefix(".") {
            throw Self.invalid(
                "template \"\(pattern)\" renders to the file name \"\(name)\", which is only an extension or a hidden name: put a name before the extension, such as ep{epoch}-ba{batch}\(name)")
        }
        return path
    }

    /// The pattern, so that a template prints as it was written.
    public var description: String { pattern }

    /// Splits `pattern` into literal text and fields, with CPython's rules for braces.
    private static func segments(of pattern: String, allowed: Set<Variable>) throws(CheckpointError) -> [Segment] {
        var segments: [Segment] = []
        var literal = String.UnicodeScalarView()
        var rest = Substring(pattern).unicodeScalars
        while let scalar = rest.popFirst() {
            switch scalar {
            case "{" where rest.first == "{", "}" where rest.first == "}":
                rest.removeFirst()
                literal.append(scalar)
            case "}":
                throw invalid("single '}' in template \"\(pattern)\"; write '}}' for a literal brace")
            case "{":
                guard let close = rest.firstIndex(where: { $0 == "{" || $0 == "}" }) else {
                    throw invalid(
                        "'{' without a matching '}' in template \"\(pattern)\"; write '{{' for a literal brace")
                }
                guard rest[close] == "}" else {
                    throw invalid(
                        "'{' inside the field \"{\(Substring(rest[...close]))\" in template \"\(pattern)\": "
                            + "fields cannot be nested; write '{{' for a literal brace")
                }
                if !literal.isEmpty {
                    segments.append(.literal(String(literal)))
                    literal = String.UnicodeScalarView()
                }
                segments.append(try field(Substring(rest[..<close]), in: pattern, allowed: allowed))
                rest = rest[rest.index(after: close)...]
            default:
                literal.append(scalar)
            }
        }
        if !literal.isEmpty { segments.append(.literal(String(literal))) }
        return segments
    }

    /// Parses the inside of one `{...}` field.
    private static func field(
        _ text: Substring, in pattern: String, allowed: Set<Variable>
    ) throws(CheckpointError) -> Segment {
        let quoted = "{\(text)} in template \"\(pattern)\""
        let nameEnd = text.firstIndex { $0 == ":" || $0 == "!" } ?? text.endIndex
        let name = text[..<nameEnd]
        if text[nameEnd...].hasPrefix("!") {
            throw invalid("conversion in \(quoted): conversions such as !r are not supported")
        }
        if name.isEmpty || name.allSatisfy(\.isWholeNumber) {
            throw invalid("positional field \(quoted): name a variable, such as {epoch}")
        }
        if name.contains(where: { $0 == "." || $0 == "[" }) {
            throw invalid("attribute or index access in \(quoted): name a variable alone, such as {epoch}")
        }
        guard let variable = Variable(rawValue: String(name)) else {
            throw invalid(
                "unknown variable {\(name)} in template \"\(pattern)\"; "
                    + "known variables: \(list(Set(Variable.allCases)))")
        }
        guard allowed.contains(variable) else {
            throw invalid(
                "variable {\(name)} is not allowed in template \"\(pattern)\"; allowed variables: \(list(allowed))")
        }
        let spec = text[nameEnd...].dropFirst()
        do {
            return .field(variable, try FormatSpec(spec, for: variable.kind))
        } catch {
            throw invalid(
                "invalid format spec \"\(spec)\" for {\(name)} in template \"\(pattern)\": \(error.reason)")
        }
    }

    private static func list(_ variables: Set<Variable>) -> String {
        let names = Variable.allCases.filter(variables.contains).map(\.rawValue)
        return names.isEmpty ? "none" : names.joined(separator: ", ")
    }

    private static func invalid(_ message: String) -> CheckpointError {
        CheckpointError(.invalidTemplate, message)
    }
}

/// The values a ``FilenameTemplate`` fills in, one for each ``FilenameTemplate/Variable``.
///
/// The defaults describe a single-process run that has not trained yet, so that callers set only
/// what their templates use.
public struct FilenameValues: Sendable, Hashable {
    /// The name of the training run.
    public var runName: String
    /// The global rank of the process that writes the file.
    public var rank: Int
    /// The rank of the process within its node.
    public var localRank: Int
    /// The number of processes in the run.
    public var worldSize: Int
    /// The number of processes on this node.
    public var localWorldSize: Int
    /// The rank of this node.
    public var nodeRank: Int
    /// The current epoch.
    public var epoch: Int
    /// The number of batches trained so far.
    public var batch: Int
    /// The number of batches trained in the current epoch.
    public var batchInEpoch: Int
    /// The number of samples trained so far.
    public var sample: Int
    /// The number of samples trained in the current epoch.
    public var sampleInEpoch: Int
    /// The number of tokens trained so far.
    public var token: Int
    /// The number of tokens trained in the current epoch.
    public var tokenInEpoch: Int
    /// Seconds of wall-clock training time so far.
    public var totalWct: Double
    /// Seconds of wall-clock training time in the current epoch.
    public var epochWct: Double
    /// Seconds of wall-clock time of the current batch.
    public var batchWct: Double

    /// Creates values; every argument defaults to that of a single-process run at its start.
    public init(
        runName: String = "", rank: Int = 0, localRank: Int = 0, worldSize: Int = 1,
        localWorldSize: Int = 1, nodeRank: Int = 0, epoch: Int = 0, batch: Int = 0,
        batchInEpoch: Int = 0, sample: Int = 0, sampleInEpoch: Int = 0, token: Int = 0,
        tokenInEpoch: Int = 0, totalWct: Double = 0, epochWct: Double = 0, batchWct: Double = 0
    ) {
        self.runName = runName
        self.rank = rank
        self.localRank = localRank
        self.worldSize = worldSize
        self.localWorldSize = localWorldSize
        self.nodeRank = nodeRank
        self.epoch = epoch
        self.batch = batch
        self.batchInEpoch = batchInEpoch
        self.sample = sample
        self.sampleInEpoch = sampleInEpoch
        self.token = token
        self.tokenInEpoch = tokenInEpoch
        self.totalWct = totalWct
        self.epochWct = epochWct
        self.batchWct = batchWct
    }

    /// The value of `variable`, as the Python type Composer would pass.
    subscript(variable: FilenameTemplate.Variable) -> FormatSpec.Value {
        switch variable {
        case .runName: .string(runName)
        case .rank: .integer(rank)
        case .localRank: .integer(localRank)
        case .worldSize: .integer(worldSize)
        case .localWorldSize: .integer(localWorldSize)
        case .nodeRank: .integer(nodeRank)
        case .epoch: .integer(epoch)
        case .batch: .integer(batch)
        case .batchInEpoch: .integer(batchInEpoch)
        case .sample: .integer(sample)
        case .sampleInEpoch: .integer(sampleInEpoch)
        case .token: .integer(token)
        case .tokenInEpoch: .integer(tokenInEpoch)
        case .totalWct: .float(totalWct)
        case .epochWct: .float(epochWct)
        case .batchWct: .float(batchWct)
        }
    }
}

extension FilenameTemplate {
    /// Whether `name` could be a rendering of this template in which the variables in `known`
    /// have their values in `values` and every other variable has any value.
    ///
    /// This is how the checkpoint saver finds files an earlier run left, whatever the template
    /// holds (`{run_name}`, format specs, folders), without guessing how to glob it. A field's
    /// rendering never holds a `/`, so fields match within one path component.
    public func couldHaveRendered(_ name: String, known: Set<Variable> = [], values: FilenameValues = FilenameValues()) -> Bool {
        // The template as literal bytes and wildcards (an unknown field: any bytes but `/`),
        // cut into path components at the `/`s of its literals. Matched by hand, not with a
        // regular expression: a backtracking engine takes exponential time (and ICU's gives up,
        // answering "no match") on templates with many fields, found by fuzzing.
        var components: [[WildcardPart]] = [[]]
        func appendLiteral(_ text: String) {
            for (index, piece) in text.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).enumerated() {
                if index > 0 { components.append([]) }
                if !piece.isEmpty { components[components.count - 1].append(.literal(Array(piece))) }
            }
        }
        for segment in segments {
            switch segment {
            case .literal(let text):
                appendLiteral(text)
            case .field(let variable, let spec):
                if known.contains(variable) {
                    appendLiteral(spec.format(values[variable]))
                } else {
                    components[components.count - 1].append(.anything)
                }
            }
        }
        let names = name.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard names.count == components.count else { return false }
        return zip(names, components).allSatisfy { Self.matches(Array($0), $1) }
    }

    /// A part of one path component of a template: bytes, or any run of bytes.
    private enum WildcardPart {
        case literal([UInt8])
        case anything
    }

    /// Whether `text` matches `parts`, in time linear in their product: the literals between
    /// two wildcards are found leftmost first, which is always right when the wildcards match
    /// any run of bytes.
    private static func matches(_ text: [UInt8], _ parts: [WildcardPart]) -> Bool {
        // The literals between the wildcards (adjacent literals joined, the first and last
        // possibly empty).
        var literals: [[UInt8]] = [[]]
        for part in parts {
            switch part {
            case .literal(let bytes): literals[literals.count - 1] += bytes
            case .anything: literals.append([])
            }
        }
        guard let first = literals.first, let last = literals.last, literals.count > 1 else { return text == literals[0] }
        guard text.count >= first.count + last.count, text.starts(with: first), text.reversed().starts(with: last.reversed()) else {
            return false
        }
        var position = first.count
        let end = text.count - last.count
        for literal in literals.dropFirst().dropLast() {
            guard let found = endOfFirstOccurrence(of: literal, in: text, from: position, to: end) else { return false }
            position = found
        }
        return true
    }

    /// Where the first occurrence of `literal` in `text[from..<to]` ends, or `nil`.
    private static func endOfFirstOccurrence(of literal: [UInt8], in text: [UInt8], from: Int, to: Int) -> Int? {
        guard !literal.isEmpty else { return from }
        var start = from
        while start + literal.count <= to {
            if text[start..<(start + literal.count)].elementsEqual(literal) { return start + literal.count }
            start += 1
        }
        return nil
    }
}
