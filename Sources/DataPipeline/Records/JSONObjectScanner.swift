/// What a JSON value is, as the scanner saw it.
public enum JSONValueKind: Sendable, Equatable {
    case string, number, object, array, boolean, null

    /// "a string", "an array", … for error messages.
    public var phrase: String {
        switch self {
        case .string: return "a string"
        case .number: return "a number"
        case .object: return "an object"
        case .array: return "an array"
        case .boolean: return "a boolean"
        case .null: return "null"
        }
    }
}

/// A line that is not valid JSON: where (0-based byte offset) and why.
struct JSONSyntaxError: Error {
    let offset: Int
    let reason: String
}

/// Checks that a line is one JSON value (RFC 8259) and, when it is an object, reports the byte
/// spans of its top-level fields — without building the value. The record readers need only a
/// field or two of each line, and the spans let a writer put back every other byte unchanged.
/// Strings are not decoded here (`JSONString` does that for the fields that are used); UTF-8 is
/// checked separately by `UTF8Check`.
struct JSONObjectScanner {
    /// One top-level field: the key's bytes (between the quotes, still escaped) and the value's
    /// bytes (for a string, including its quotes).
    struct Field {
        var key: Range<Int>
        var keyHasEscapes: Bool
        var value: Range<Int>
        var kind: JSONValueKind
        var valueHasEscapes: Bool
    }

    /// Nesting deeper than this is rejected rather than risking the stack.
    static let maximumDepth = 512

    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// The top-level kind of `bytes` and, for an object, its fields in order.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONSyntaxError) -> (kind: JSONValueKind, fields: [Field]) {
        var scanner = JSONObjectScanner(bytes)
        var fields = [Field]()
        scanner.skipWhitespace()
        let kind: JSONValueKind
        if scanner.position < bytes.count && bytes[scanner.position] == UInt8(ascii: "{") {
            try scanner.scanObject(depth: 1, fields: &fields)
            kind = .object
        } else {
            kind = try scanner.scanValue(depth: 0).kind
        }
        scanner.skipWhitespace()
        guard scanner.position == bytes.count else {
            throw JSONSyntaxError(offset: scanner.position, reason: "unexpected text after the JSON value")
        }
        return (kind, fields)
    }

    private func fail(_ reason: String) -> JSONSyntaxError {
        JSONSyntaxError(offset: position, reason: reason)
    }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    /// Scans `{ … }` starting at `{`; collects fields only when `fields` is the top level's.
    private mutating func scanObject(depth: Int, fields: inout [Field]) throws(JSONSyntaxError) {
        guard depth <= Self.maximumDepth else { throw fail("nested deeper than \(Self.maximumDepth) levels") }
        position += 1
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return
        }
        while true {
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw fail(position < bytes.count ? "expected a quoted field name" : "unexpected end of line inside an object")
            }
            let keyStart = position + 1
            let keyHasEscapes = try scanString()
            let key = keyStart..<(position - 1)
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw fail("expected ':' after a field name") }
            position += 1
            skipWhitespace()
            let valueStart = position
            let (kind, valueHasEscapes) = try scanValue(depth: depth)
            if depth == 1 {
                fields.append(Field(key: key, keyHasEscapes: keyHasEscapes, value: valueStart..<position, kind: kind,
                                    valueHasEscapes: valueHasEscapes))
            }
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end of line inside an object") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == UInt8(ascii: "}") else { throw fail("expected ',' or '}' in an object") }
            position += 1
            return
        }
    }

    private mutating func scanArray(depth: Int) throws(JSONSyntaxError) {
        guard depth <= Self.maximumDepth else { throw fail("nested deeper than \(Self.maximumDepth) levels") }
        position += 1
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            return
        }
        while true {
            _ = try scanValue(depth: depth)
            skipWhitespace()
            guard position < bytes.count else { throw fail("unexpected end of line inside an array") }
            if bytes[position] == UInt8(ascii: ",") {
                position += 1
                continue
            }
            guard bytes[position] == UInt8(ascii: "]") else { throw fail("expected ',' or ']' in an array") }
            position += 1
            return
        }
    }

    /// Scans any value at `position` (after whitespace); returns its kind and, for a string,
    /// whether it holds escapes.
    private mutating func scanValue(depth: Int) throws(JSONSyntaxError) -> (kind: JSONValueKind, hasEscapes: Bool) {
        skipWhitespace()
        guard position < bytes.count else { throw fail("unexpected end of line (expected a value)") }
        switch bytes[position] {
        case UInt8(ascii: "\""):
            return (.string, try scanString())
        case UInt8(ascii: "{"):
            var unused = [Field]()
            try scanObject(depth: depth + 1, fields: &unused)
            return (.object, false)
        case UInt8(ascii: "["):
            try scanArray(depth: depth + 1)
            return (.array, false)
        case UInt8(ascii: "t"):
            try scanLiteral("true")
            return (.boolean, false)
        case UInt8(ascii: "f"):
            try scanLiteral("false")
            return (.boolean, false)
        case UInt8(ascii: "n"):
            try scanLiteral("null")
            return (.null, false)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber()
            return (.number, false)
        default:
            throw fail("unexpected character (expected a value)")
        }
    }

    private mutating func scanLiteral(_ literal: StaticString) throws(JSONSyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw fail("invalid literal (expected \(literal))") }
        for index in 0..<count where bytes[position + index] != literal.utf8Start[index] {
            throw fail("invalid literal (expected \(literal))")
        }
        position += count
    }

    private mutating func scanDigits() -> Int {
        let start = position
        while position < bytes.count, bytes[position] &- UInt8(ascii: "0") < 10 { position += 1 }
        return position - start
    }

    private mutating func scanNumber() throws(JSONSyntaxError) {
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count else { throw fail("invalid number") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else if scanDigits() == 0 {
            throw fail("invalid number")
        }
        if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard scanDigits() > 0 else { throw fail("invalid number (digits must follow '.')") }
        }
        if position < bytes.count && (bytes[position] | 0x20) == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                position += 1
            }
            guard scanDigits() > 0 else { throw fail("invalid number (digits must follow the exponent)") }
        }
    }

    /// Scans a string starting at its `"`; leaves `position` after the closing quote.
    private mutating func scanString() throws(JSONSyntaxError) -> Bool {
        position += 1
        var hasEscapes = false
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        while position < bytes.count {
            // Skip 8 plain bytes at a time: no `"`, no `\`, no control character (SWAR tests
            // for a zero byte after XOR, and for a byte below 0x20).
            while position + 8 <= bytes.count {
                let word = UnsafeRawBufferPointer(bytes).loadUnaligned(fromByteOffset: position, as: UInt64.self)
                let quote = word ^ (ones &* 0x22), backslash = word ^ (ones &* 0x5C)
                let special = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((word &- ones &* 0x20) & ~word)
                if special & highs != 0 { break }
                position += 8
            }
            guard position < bytes.count else { break }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return hasEscapes
            }
            if byte == UInt8(ascii: "\\") {
                hasEscapes = true
                position += 1
                guard position < bytes.count else { break }
                switch bytes[position] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    position += 1
                case UInt8(ascii: "u"):
                    // Four hex digits before the end of the line (a `break` here once left only
                    // the switch, so `"\u"` passed and the decoder read past the line).
                    for offset in 1...4 where position + offset >= bytes.count || JSONString.hexValue(bytes[position + offset]) == nil {
                        position += offset
                        throw fail("invalid \\u escape (expected 4 hex digits)")
                    }
                    position += 5
                default:
                    throw fail("invalid escape in a string")
                }
                continue
            }
            if byte < 0x20 { throw fail("unescaped control character in a string") }
            position += 1
        }
        throw fail("unterminated string")
    }
}
