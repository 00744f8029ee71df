/// A small XML reader for S3's responses (errors, listings, multipart uploads).
///
/// S3's XML is simple: elements, text, a namespace attribute, an XML declaration, and the five
/// predefined entities plus character references. This reader handles exactly that, without
/// FoundationXML (which needs libxml2 at run time); attributes are skipped, and anything it
/// cannot read is `nil`, never a crash.
struct S3XML: Sendable {
    var name: String
    var text: String
    var children: [S3XML]

    /// The first child named `name`.
    func child(_ name: String) -> S3XML? { children.first { $0.name == name } }

    /// Every child named `name`.
    func all(_ name: String) -> [S3XML] { children.filter { $0.name == name } }

    /// The text of the first child named `name`.
    func value(_ name: String) -> String? { child(name)?.text }

    /// Parses a document; `nil` when it is not well-formed enough to read.
    static func parse(_ bytes: [UInt8]) -> S3XML? {
        var reader = Reader(bytes: bytes)
        return reader.document()
    }

    /// The nesting S3 never exceeds; deeper input is refused rather than recursed into.
    static let maximumDepth = 32

    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        mutating func document() -> S3XML? {
            while true {
                skipWhitespace()
                if starts(with: "<?") {
                    guard skip(past: "?>") else { return nil }
                } else if starts(with: "<!--") {
                    guard skip(past: "-->") else { return nil }
                } else if starts(with: "<!") {
                    guard skip(past: ">") else { return nil }
                } else {
                    break
                }
            }
            return element(depth: 0)
        }

        mutating func element(depth: Int) -> S3XML? {
            guard depth < S3XML.maximumDepth, index < bytes.count, bytes[index] == UInt8(ascii: "<") else { return nil }
            index += 1
            let nameStart = index
            while index < bytes.count, !isSpace(bytes[index]), bytes[index] != UInt8(ascii: ">"), bytes[index] != UInt8(ascii: "/") {
                index += 1
            }
            let name = String(decoding: bytes[nameStart..<index], as: UTF8.self)
            guard !name.isEmpty else { return nil }
            // Attributes are skipped; a quoted value may hold `>`.
            var quote: UInt8?
            while index < bytes.count {
                let byte = bytes[index]
                if let open = quote {
                    if byte == open { quote = nil }
                } else if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                    quote = byte
                } else if byte == UInt8(ascii: ">") {
                    break
                }
                index += 1
            }
            guard index < bytes.count else { return nil }
            if bytes[index - 1] == UInt8(ascii: "/") {
                index += 1
                return S3XML(name: name, text: "", children: [])
            }
            index += 1
            var text: [UInt8] = []
            var children: [S3XML] = []
            while index < bytes.count {
                if bytes[index] != UInt8(ascii: "<") {
                    text.append(bytes[index])
                    index += 1
                } else if starts(with: "</") {
                    guard skip(past: ">") else { return nil }
                    return S3XML(name: name, text: Self.decodeEntities(text), children: children)
                } else if starts(with: "<!--") {
                    guard skip(past: "-->") else { return nil }
                } else if starts(with: "<![CDATA[") {
                    index += 9
                    let start = index
                    guard skip(past: "]]>") else { return nil }
                    // CDATA is literal: escape its ampersands so decoding leaves them as they are.
                    for byte in bytes[start..<(index - 3)] {
                        text += byte == UInt8(ascii: "&") ? Array("&amp;".utf8) : [byte]
                    }
                } else {
                    guard let child = element(depth: depth + 1) else { return nil }
                    children.append(child)
                }
            }
            return nil
        }

        func starts(with prefix: String) -> Bool {
            let count = prefix.utf8.count
            return index + count <= bytes.count && bytes[index..<(index + count)].elementsEqual(prefix.utf8)
        }

        /// Moves past the next `marker`; `false` when there is none.
        mutating func skip(past marker: String) -> Bool {
            let count = marker.utf8.count
            let first = marker.utf8.first
            while index + count <= bytes.count {
                if bytes[index] == first && bytes[index..<(index + count)].elementsEqual(marker.utf8) {
                    index += count
                    return true
                }
                index += 1
            }
            return false
        }

        mutating func skipWhitespace() {
            while index < bytes.count, isSpace(bytes[index]) { index += 1 }
        }

        func isSpace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
        }

        /// Replaces the predefined entities and character references, scalar by scalar (a
        /// `;` followed by a combining mark is one `Character`, but it still ends an entity).
        static func decodeEntities(_ bytes: [UInt8]) -> String {
            let text = String(decoding: bytes, as: UTF8.self)
            guard text.contains("&") else { return text }
            var result = String.UnicodeScalarView()
            var rest = text.unicodeScalars[...]
            while let amp = rest.firstIndex(of: "&") {
                result += rest[..<amp]
                let afterAmp = rest.index(after: amp)
                guard let semi = rest[amp...].prefix(11).firstIndex(of: ";") else {
                    result.append("&")
                    rest = rest[afterAmp...]
                    continue
                }
                let entity = String(String.UnicodeScalarView(rest[afterAmp..<semi]))
                switch entity {
                case "amp": result.append("&")
                case "lt": result.append("<")
                case "gt": result.append(">")
                case "quot": result.append("\"")
                case "apos": result.append("'")
                default:
                    var scalar: Unicode.Scalar?
                    if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                        scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
                    } else if entity.hasPrefix("#") {
                        scalar = UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init)
                    }
                    if let scalar {
                        result.append(scalar)
                    } else {
                        result += rest[amp...semi]
                    }
                }
                rest = rest[rest.index(after: semi)...]
            }
            return String(result + rest)
        }
    }

    /// `text` with the characters XML reserves escaped, for request bodies.
    ///
    /// Scalar by scalar, not character by character: a `<` followed by a combining mark is one
    /// Swift `Character` that is not equal to `"<"`, but still a `<` to an XML reader.
    static func escape(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;".unicodeScalars
            case "<": result += "&lt;".unicodeScalars
            case ">": result += "&gt;".unicodeScalars
            case "\"": result += "&quot;".unicodeScalars
            case "'": result += "&apos;".unicodeScalars
            default: result.append(scalar)
            }
        }
        return String(result)
    }
}
