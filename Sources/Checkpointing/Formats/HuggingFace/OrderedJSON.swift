/// A JSON value that keeps what Foundation's decoders drop: the order of an object's members
/// and members that repeat a name.
///
/// A Hugging Face index is read with it because both matter there: the `weight_map`'s order is
/// the checkpoint's tensor order, and a tensor listed twice must be refused rather than
/// silently resolved to one of its shards (`JSONDecoder` keeps the first, Python's `json` the last).
indirect enum OrderedJSON {
    /// An object's members, in order, repeated names included.
    case object([Member])
    case array([OrderedJSON])
    case string(String)
    /// A number, as written (so an integer of any size is read exactly).
    case number(String)
    case bool(Bool)
    case null

    /// One member of an object.
    struct Member {
        var name: String
        var value: OrderedJSON
    }

    /// The value's kind, for messages.
    var kindName: String {
        switch self {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .number: "a number"
        case .bool: "a boolean"
        case .null: "null"
        }
    }

    /// The first member named `name`, when this is an object.
    subscript(name: String) -> OrderedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.name == name }?.value
    }

    /// Nesting deeper than this is refused: no index comes close, and recursion must stay bounded.
    static let maximumDepth = 64

    /// Parses one JSON text (RFC 8259; surrounding whitespace allowed), UTF-8 encoded.
    ///
    /// - Throws: ``CheckpointError`` (`.malformed`) with the byte offset of the first error.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws(CheckpointError) -> OrderedJSON {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.failure("unexpected text after the JSON value") }
        return value
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        func failure(_ message: String) -> CheckpointError {
            CheckpointError(.malformed, "is not valid JSON: \(message)", offset: position)
        }

        var current: UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipWhitespace() {
            while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { position += 1 }
        }

        mutating func expect(_ literal: String) throws(CheckpointError) {
            for byte in literal.utf8 {
                guard current == byte else { throw failure("expected \"\(literal)\"") }
                position += 1
            }
        }

        mutating func value(depth: Int) throws(CheckpointError) -> OrderedJSON {
            guard depth < OrderedJSON.maximumDepth else { throw failure("nested more than \(OrderedJSON.maximumDepth) levels deep") }
            guard let byte = current else { throw failure("the text ends where a value was expected") }
            switch byte {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"):
                try expect("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try expect("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try expect("null")
                return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw failure("unexpected character where a value was expected")
            }
        }

        mutating func object(depth: Int) throws(CheckpointError) -> OrderedJSON {
            position += 1
            var members: [Member] = []
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                position += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard current == UInt8(ascii: "\"") else { throw failure("expected a member name in quotes") }
                let name = try string()
                skipWhitespace()
                try expect(":")
                skipWhitespace()
                members.append(Member(name: name, value: try value(depth: depth + 1)))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "}"):
                    position += 1
                    return .object(members)
                default: throw failure("expected ',' or '}' in an object")
                }
            }
        }

        mutating func array(depth: Int) throws(CheckpointError) -> OrderedJSON {
            position += 1
            var elements: [OrderedJSON] = []
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                position += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth + 1))
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): position += 1
                case UInt8(ascii: "]"):
                    position += 1
                    return .array(elements)
                default: throw failure("expected ',' or ']' in an array")
                }
            }
        }

        mutating func number() throws(CheckpointError) -> String {
            let start = position
            func digits(_ parser: inout Parser) -> Int {
                var count = 0
                while let byte = parser.current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                    parser.position += 1
                    count += 1
                }
                return count
            }
            if current == UInt8(ascii: "-") { position += 1 }
            if current == UInt8(ascii: "0") {
                position += 1
            } else if digits(&self) == 0 {
                throw failure("a number needs digits")
            }
            if current == UInt8(ascii: ".") {
                position += 1
                guard digits(&self) > 0 else { throw failure("a number's fraction needs digits") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                position += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
                guard digits(&self) > 0 else { throw failure("a number's exponent needs digits") }
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        }

        mutating func string() throws(CheckpointError) -> String {
            position += 1
            var scalars = String.UnicodeScalarView()
            var runStart = position
            // Copies the unescaped bytes since `runStart`, checking that they are UTF-8.
            func flush(_ parser: Parser, into scalars: inout String.UnicodeScalarView) throws(CheckpointError) {
                let run = UnsafeRawBufferPointer(rebasing: parser.bytes[runStart..<parser.position])
                guard let text = String(validating: run, as: UTF8.self) else {
                    throw parser.failure("a string is not valid UTF-8")
                }
                scalars.append(contentsOf: text.unicodeScalars)
            }
            while true {
                guard let byte = current else { throw failure("a string is not closed") }
                switch byte {
                case UInt8(ascii: "\""):
                    try flush(self, into: &scalars)
                    position += 1
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    try flush(self, into: &scalars)
                    position += 1
                    scalars.append(try escape())
                    runStart = position
                case 0..<0x20:
                    throw failure("a string holds an unescaped control character")
                default:
                    position += 1
                }
            }
        }

        /// The character an escape sequence stands for; `position` is just past the backslash.
        mutating func escape() throws(CheckpointError) -> Unicode.Scalar {
            guard let byte = current else { throw failure("a string ends inside an escape") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""): return "\""
            case UInt8(ascii: "\\"): return "\\"
            case UInt8(ascii: "/"): return "/"
            case UInt8(ascii: "b"): return "\u{08}"
            case UInt8(ascii: "f"): return "\u{0C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                let first = try hexQuad()
                if (0xD800..<0xDC00).contains(first) {
                    guard current == UInt8(ascii: "\\") else { throw failure("a UTF-16 high surrogate is not followed by its low half") }
                    position += 1
                    try expect("u")
                    let second = try hexQuad()
                    guard (0xDC00..<0xE000).contains(second) else {
                        throw failure("a UTF-16 high surrogate is not followed by its low half")
                    }
                    // A valid pair always makes a valid scalar.
                    return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))!
                }
                guard let scalar = Unicode.Scalar(first) else { throw failure("a string holds a lone UTF-16 surrogate") }
                return scalar
            default:
                throw failure("a string holds an unknown escape")
            }
        }

        mutating func hexQuad() throws(CheckpointError) -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let byte = current, let digit = Self.hexValue(byte) else { throw failure("\\u needs four hex digits") }
                value = value << 4 | digit
                position += 1
            }
            return value
        }

        static func hexValue(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
            default: nil
            }
        }
    }
}
