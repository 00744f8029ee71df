#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One parsed format spec of Python's format-specification mini-language: the `03d` in `{epoch:03d}`.
///
/// Composer names checkpoints with `str.format`, so a spec must mean here exactly what it means to
/// CPython 3.11. Parsing follows `parse_internal_render_format_spec` and the checks of
/// `str.__format__`, `int.__format__` and `float.__format__`, and formatting follows
/// `formatter_unicode.c` and `pystrtod.c`, character for character. Because the kind of value a
/// variable holds is known when the template is created, every error Python would raise while
/// formatting is raised here while parsing, and formatting cannot fail.
struct FormatSpec: Hashable, Sendable {
    /// The Python type of the formatted value, named as Python names it in error messages.
    enum Kind: String {
        case string = "str", integer = "int", float = "float"
    }

    /// A value to format.
    enum Value {
        case string(String), integer(Int), float(Double)
    }

    /// Why a spec was refused, in CPython's words where CPython refuses it too.
    struct Invalid: Error {
        var reason: String
    }

    /// The largest width or precision accepted. CPython accepts any, but no path is longer than
    /// PATH_MAX, and the cap keeps a typo like `{epoch:0999999999}` from exhausting memory.
    static let maximumWidth = 4096

    private var fill: Unicode.Scalar = " "
    private var align: Unicode.Scalar
    private var sign: Unicode.Scalar?
    private var coercesNegativeZero = false
    private var alternate = false
    private var width = 0
    private var separator: Unicode.Scalar?
    private var precision: Int?
    private var type: Unicode.Scalar?

    /// Parses `[[fill]align][sign][z][#][0][width][grouping][.precision][type]` for a value of `kind`.
    init(_ spec: Substring, for kind: Kind) throws(Invalid) {
        var rest = spec.unicodeScalars
        align = kind == .string ? "<" : ">"
        type = switch kind {
        case .string: "s"
        case .integer: "d"
        case .float: nil
        }

        let alignments: Set<Unicode.Scalar> = ["<", ">", "=", "^"]
        var fillSpecified = false
        var alignSpecified = false
        if rest.count >= 2, alignments.contains(rest[rest.index(after: rest.startIndex)]) {
            fill = rest.removeFirst()
            align = rest.removeFirst()
            fillSpecified = true
            alignSpecified = true
            // Python pads with it; in a file name its padding would be folders, which the
            // saver, looking for a run's files field by field, would never find again.
            guard fill != "/" else { throw Invalid(reason: "Fill character '/' is not allowed in file names") }
        } else if let first = rest.first, alignments.contains(first) {
            align = rest.removeFirst()
            alignSpecified = true
        }
        if let first = rest.first, ["+", "-", " "].contains(first) {
            sign = rest.removeFirst()
        }
        coercesNegativeZero = rest.removeFirst(ifEqualTo: "z")
        alternate = rest.removeFirst(ifEqualTo: "#")
        // A leading '0' is shorthand for zero fill, placed after the sign only for numbers.
        if !fillSpecified, rest.removeFirst(ifEqualTo: "0") {
            fill = "0"
            if !alignSpecified, kind != .string { align = "=" }
        }
        width = try Self.integer(from: &rest) ?? 0

        if rest.removeFirst(ifEqualTo: ",") { separator = "," }
        if rest.removeFirst(ifEqualTo: "_") {
            guard separator == nil else { throw Invalid(reason: "Cannot specify both ',' and '_'.") }
            separator = "_"
        }
        if separator == "_", rest.first == "," {
            throw Invalid(reason: "Cannot specify both ',' and '_'.")
        }
        if rest.removeFirst(ifEqualTo: ".") {
            guard let precision = try Self.integer(from: &rest) else {
                throw Invalid(reason: "Format specifier missing precision")
            }
            self.precision = precision
        }
        guard rest.count <= 1 else { throw Invalid(reason: "Invalid format specifier") }
        if let last = rest.first { type = last }

        try checkSeparator()
        try check(for: kind)
    }

    /// Formats `value`, which must be of the kind the spec was parsed for.
    func format(_ value: Value) -> String {
        switch value {
        case .string(let text):
            aligned(precision.map { String(Substring(text.unicodeScalars.prefix($0))) } ?? text)
        case .integer(let number) where typeIs(oneOf: "eEfFgG%"):
            format(Double(number))
        case .integer(let number):
            format(number)
        case .float(let number):
            format(number)
        }
    }

    // MARK: - Validation

    private func checkSeparator() throws(Invalid) {
        guard let separator else { return }
        // Underscores also group binary, octal and hex digits, by fours (PEP 515).
        let groupable = separator == "_" ? "deEfFgG%boxX" : "deEfFgG%"
        if let type, !groupable.unicodeScalars.contains(type) {
            throw Invalid(reason: "Cannot specify '\(separator)' with '\(type)'.")
        }
    }

    private func check(for kind: Kind) throws(Invalid) {
        switch kind {
        case .string where type == "s":
            if sign != nil { throw Invalid(reason: "Sign not allowed in string format specifier") }
            if coercesNegativeZero {
                throw Invalid(reason: "Negative zero coercion (z) not allowed in string format specifier")
            }
            if alternate { throw Invalid(reason: "Alternate form (#) not allowed in string format specifier") }
            if align == "=" { throw Invalid(reason: "'=' alignment not allowed in string format specifier") }
        case .integer where typeIs(oneOf: "bdnoxX"):
            if precision != nil { throw Invalid(reason: "Precision not allowed in integer format specifier") }
            if coercesNegativeZero {
                throw Invalid(reason: "Negative zero coercion (z) not allowed in integer format specifier")
            }
        case .integer where type == "c":
            // Python would turn the number into a character, and fail at render time when the
            // number is out of range; neither belongs in a file name.
            throw Invalid(reason: "Format code 'c' is not supported in file names")
        case .integer where typeIs(oneOf: "eEfFgG%"), .float where type == nil || typeIs(oneOf: "eEfFgGn%"):
            break  // formatted as a float
        default:
            throw Invalid(reason: "Unknown format code '\(type ?? " ")' for object of type '\(kind.rawValue)'")
        }
    }

    /// Reads a run of decimal digits, of any script as CPython's `get_integer` does; nil if there is none.
    private static func integer(from rest: inout Substring.UnicodeScalarView) throws(Invalid) -> Int? {
        var value: Int?
        while let scalar = rest.first, scalar.properties.numericType == .decimal,
              let digit = scalar.properties.numericValue {
            rest.removeFirst()
            let next = (value ?? 0) * 10 + Int(digit)
            guard next <= maximumWidth else {
                throw Invalid(reason: "Width or precision larger than \(maximumWidth), the longest possible path")
            }
            value = next
        }
        return value
    }

    // MARK: - Formatting

    private func format(_ number: Int) -> String {
        let (radix, prefix) = switch type {
        case "b": (2, "0b")
        case "o": (8, "0o")
        case "x": (16, "0x")
        case "X": (16, "0X")
        default: (10, "")
        }
        let digits = String(number.magnitude, radix: radix, uppercase: type == "X")
        return laidOut(negative: number < 0, prefix: alternate ? prefix : "", digits: digits[...], remainder: "")
    }

    private func format(_ number: Double) -> String {
        // Scaled first, as CPython does, so that a huge percentage overflows to inf.
        let number = type == "%" ? number * 100 : number
        guard number.isFinite else {
            let text = (number.isNaN ? "nan" : "inf") + (type == "%" ? "%" : "")
            let cased = typeIs(oneOf: "EFG") ? text.uppercased() : text
            return laidOut(negative: number < 0, digits: "", remainder: cased[...])
        }
        let text = switch type {
        case let conversion? where "eEfF".unicodeScalars.contains(conversion):
            Self.printf(conversion, alternate: alternate, precision: precision ?? 6, number)
        case "%": Self.printf("f", alternate: alternate, precision: precision ?? 6, number) + "%"
        default: general(number)
        }
        let unsigned = text.hasPrefix("-") ? text.dropFirst() : text[...]
        let roundsToZero = !unsigned.prefix { $0 != "e" && $0 != "E" }.contains(where: \.isNonZeroDigit)
        let integerPart = unsigned.prefix(while: \.isASCIIDigit)
        return laidOut(
            negative: text.hasPrefix("-") && !(coercesNegativeZero && roundsToZero),
            digits: integerPart, remainder: unsigned.dropFirst(integerPart.count))
    }

    /// Types g, G, n and none, laid out as CPython's `format_float_short` does. C's `%g` cannot be
    /// used for these: a spec without a type keeps `.0` on whole numbers, switches to an exponent
    /// one digit earlier than `%g`, and without a precision prints the shortest round-tripping digits.
    private func general(_ number: Double) -> String {
        let shortest = type == nil && precision == nil
        let significant = max(precision ?? 6, 1)
        let (digits, decimalPoint) = Self.decimalDigits(
            shortest
                ? number.magnitude.description
                : Self.printf("e", alternate: false, precision: significant - 1, number.magnitude))
        // repr switches to an exponent at 1e16; no type with a precision switches one digit before 'g'.
        let exponentThreshold = shortest ? 16 : type == nil ? significant - 1 : significant
        let useExponent = decimalPoint <= -4 || decimalPoint > exponentThreshold
        let exponent = decimalPoint - 1
        let point = useExponent ? 1 : decimalPoint
        let keptDigits = alternate && !shortest ? significant : digits.count
        let end = max(keptDigits, point + (type == nil && !useExponent ? 1 : 0))

        var text = number.sign == .minus ? "-" : ""
        for index in min(point - 1, 0)..<end {
            if index == point { text += "." }
            text.append(digits.indices.contains(index) ? digits[index] : "0")
        }
        if point == end && alternate { text += "." }
        if useExponent {
            text += (type == "G" ? "E" : "e") + (exponent < 0 ? "-" : "+")
            text += (abs(exponent) < 10 ? "0" : "") + String(abs(exponent))
        }
        return text
    }

    /// The significant digits of a non-negative decimal `ddd.ddde±xx` and the position of the
    /// decimal point relative to them (`0.024579` gives `24579` and -1), as `_Py_dg_dtoa` returns them.
    private static func decimalDigits(_ text: String) -> (digits: [Character], point: Int) {
        let parts = text.split(separator: "e")
        let exponent = parts.dropFirst().first.flatMap { Int($0) } ?? 0
        let mantissa = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        var digits = Array(mantissa.joined())
        var point = mantissa[0].count + exponent
        while digits.first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while digits.last == "0" { digits.removeLast() }
        return digits.isEmpty ? (["0"], 1) : (digits, point)
    }

    /// C's printf for types e and f: glibc rounds exactly, as CPython does. It runs in the C
    /// locale so that a host program's `setlocale` cannot turn the decimal point into a comma.
    private static func printf(
        _ conversion: Unicode.Scalar, alternate: Bool, precision: Int, _ number: Double
    ) -> String {
        let format = "%" + (alternate ? "#" : "") + ".*" + String(conversion)
        let arguments: [any CVarArg] = [Int32(precision), number]
        let cLocale = newlocale(LC_NUMERIC_MASK, "C", nil)
        let previousLocale = uselocale(cLocale)  // given nil, uselocale changes nothing
        defer {
            uselocale(previousLocale)
            if let cLocale { freelocale(cLocale) }
        }
        let length = Int(withVaList(arguments) { vsnprintf(nil, 0, format, $0) })
        return String(unsafeUninitializedCapacity: length + 1) { buffer in
            buffer.withMemoryRebound(to: CChar.self) { characters in
                _ = withVaList(arguments) { vsnprintf(characters.baseAddress, length + 1, format, $0) }
            }
            return length
        }
    }

    /// Places sign, prefix, padding and grouped digits as CPython's `calc_number_widths` does.
    /// Only `digits`, the integer part, is grouped; `remainder` is what follows it, such as
    /// `.5e+05`, `%` or `inf`.
    private func laidOut(
        negative: Bool, prefix: String = "", digits: Substring, remainder: Substring
    ) -> String {
        let signText = negative ? "-" : sign.map { $0 == "-" ? "" : String($0) } ?? ""
        let lead = signText + prefix
        // Zero padding goes inside the digits, so that it is grouped too: `{:010,}` gives 00,001,234.
        let zeroPadding = fill == "0" && align == "=" ? width - lead.count - remainder.count : 0
        let body = (digits.isEmpty ? "" : grouped(digits, minimumWidth: zeroPadding)) + remainder
        guard align == "=" else { return aligned(lead + body) }
        return lead + String(repeating: String(fill), count: max(0, width - lead.count - body.count)) + body
    }

    /// CPython's `_PyUnicode_InsertThousandsGrouping`: separators every three digits (four for
    /// binary, octal and hex), and leading zeros until the result is at least `minimumWidth` long.
    private func grouped(_ digits: Substring, minimumWidth: Int) -> String {
        let groupSize = separator == nil ? Int.max : separator == "_" && typeIs(oneOf: "boxX") ? 4 : 3
        var remaining = digits
        var widthLeft = max(0, minimumWidth)
        var groups: [String] = []
        repeat {
            let length = min(groupSize, max(remaining.count, widthLeft, 1))
            let taken = remaining.suffix(length)
            groups.append(String(repeating: "0", count: length - taken.count) + taken)
            remaining = remaining.dropLast(taken.count)
            widthLeft -= length + 1  // the group and the separator before it
        } while !remaining.isEmpty || widthLeft >= 0
        return groups.reversed().joined(separator: separator.map(String.init) ?? "")
    }

    private func typeIs(oneOf types: String) -> Bool {
        type.map(types.unicodeScalars.contains) ?? false
    }

    /// Pads to the width on the side the alignment asks for, counting code points as Python does.
    private func aligned(_ text: String) -> String {
        let padding = max(0, width - text.unicodeScalars.count)
        let left = switch align {
        case ">": padding
        case "^": padding / 2
        default: 0
        }
        return String(repeating: String(fill), count: left) + text
            + String(repeating: String(fill), count: padding - left)
    }
}

extension Substring.UnicodeScalarView {
    /// Removes the first scalar if it is `scalar`, and says whether it did.
    fileprivate mutating func removeFirst(ifEqualTo scalar: Unicode.Scalar) -> Bool {
        guard first == scalar else { return false }
        removeFirst()
        return true
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
    fileprivate var isNonZeroDigit: Bool { ("1"..."9").contains(self) }
}
