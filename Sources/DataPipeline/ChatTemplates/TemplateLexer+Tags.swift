import Foundation

/// The inside of `{{ … }}` and `{% … %}`: names, literals and operators, up to the closing tag.
extension TemplateLexer {
    /// Operators, longest first so `//` wins over `/` and `**` over `*`.
    private static let operators = ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
                                    "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"]

    mutating func lexTag(isBlock: Bool) throws {
        let tagLine = line
        emit(isBlock ? .blockBegin : .variableBegin)
        var openBrackets: [Unicode.Scalar] = []
        while true {
            while let scalar = scalar(at: position), Self.isWhitespace(scalar) {
                if scalar == "\n" { line += 1 }
                position += 1
            }
            guard let current = scalar(at: position) else {
                throw failure("unexpected end of template, expected '\(isBlock ? "%}" : "}}")'", line: tagLine)
            }
            if openBrackets.isEmpty, let (width, sign) = closingTag(isBlock: isBlock) {
                emit(isBlock ? .blockEnd : .variableEnd)
                finishTagEnd(at: position + (sign == nil ? 0 : 1), width: width, stripping: sign == "-", keepNewline: sign == "+", isBlock: isBlock)
                return
            }
            if current == "'" || current == "\"" {
                emit(.string(try lexString(quote: current)))
            } else if current.properties.numericType != nil && current.isASCII {
                emit(try lexNumber())
            } else if current == "_" || (current.isASCII && current.properties.isAlphabetic) {
                let start = position
                while let scalar = scalar(at: position), scalar == "_" || (scalar.isASCII && (scalar.properties.isAlphabetic || scalar.properties.numericType != nil)) {
                    position += 1
                }
                emit(.name(String(String.UnicodeScalarView(source[start..<position]))))
            } else if let symbol = Self.operators.first(where: { hasPrefix($0, at: position) }) {
                switch symbol {
                case "(": openBrackets.append(")")
                case "[": openBrackets.append("]")
                case "{": openBrackets.append("}")
                case ")", "]", "}":
                    guard let expected = openBrackets.popLast() else { throw failure("unexpected '\(symbol)'") }
                    guard String(expected) == symbol else { throw failure("unexpected '\(symbol)', expected '\(expected)'") }
                default: break
                }
                emit(.symbol(symbol))
                position += symbol.unicodeScalars.count
            } else {
                throw failure("unexpected character '\(current)'")
            }
        }
    }

    /// The width of the closing tag at `position` and its whitespace sign, if one is there.
    private func closingTag(isBlock: Bool) -> (width: Int, sign: Unicode.Scalar?)? {
        let closer = isBlock ? "%}" : "}}"
        if hasPrefix(closer, at: position) { return (2, nil) }
        if let sign = scalar(at: position), sign == "-" || (sign == "+" && isBlock), hasPrefix(closer, at: position + 1) {
            return (2, sign)
        }
        return nil
    }

    /// A quoted string with Python's escapes (`\n`, `\t`, `\\`, `\'`, `\"`, `\xNN`, `\uNNNN`,
    /// `\UNNNNNNNN`); an unknown escape keeps its backslash, as Python's `unicode-escape` does.
    private mutating func lexString(quote: Unicode.Scalar) throws -> String {
        let startLine = line
        position += 1
        var value = String.UnicodeScalarView()
        while let scalar = scalar(at: position) {
            position += 1
            if scalar == quote { return String(value) }
            if scalar == "\n" { line += 1 }
            guard scalar == "\\", let escape = self.scalar(at: position) else { value.append(scalar); continue }
            position += 1
            switch escape {
            case "n": value.append("\n")
            case "t": value.append("\t")
            case "r": value.append("\r")
            case "0": value.append("\0")
            case "a": value.append("\u{7}")
            case "b": value.append("\u{8}")
            case "f": value.append("\u{C}")
            case "v": value.append("\u{B}")
            case "\\", "'", "\"": value.append(escape)
            case "\n": line += 1
            case "x", "u", "U":
                let digits = escape == "x" ? 2 : escape == "u" ? 4 : 8
                guard position + digits <= source.count,
                      let code = UInt32(String(String.UnicodeScalarView(source[position..<position + digits])), radix: 16),
                      let decoded = Unicode.Scalar(code) else {
                    throw failure("malformed \\\(escape) escape in a string", line: line)
                }
                value.append(decoded)
                position += digits
            default:
                value.append("\\")
                value.append(escape)
            }
        }
        throw failure("unterminated string", line: startLine)
    }

    /// An integer (`42`, `1_000`) or a float (`4.2`, `1e5`, `2.5E-3`).
    private mutating func lexNumber() throws -> TemplateToken.Kind {
        let start = position
        func digits() {
            while let scalar = scalar(at: position), scalar.isASCII && scalar.properties.numericType != nil || scalar == "_" { position += 1 }
        }
        digits()
        var isFloat = false
        if scalar(at: position) == ".", let next = scalar(at: position + 1), next.isASCII && next.properties.numericType != nil {
            isFloat = true
            position += 1
            digits()
        }
        if let exponent = scalar(at: position), exponent == "e" || exponent == "E" {
            var probe = position + 1
            if let sign = scalar(at: probe), sign == "+" || sign == "-" { probe += 1 }
            if let digit = scalar(at: probe), digit.isASCII && digit.properties.numericType != nil {
                isFloat = true
                position = probe
                digits()
            }
        }
        let text = String(String.UnicodeScalarView(source[start..<position])).replacingOccurrences(of: "_", with: "")
        if !isFloat, let integer = Int(text) { return .integer(integer) }
        guard let number = Double(text) else { throw failure("malformed number \(text)") }
        return .float(number)
    }
}
