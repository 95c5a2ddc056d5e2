import Foundation

/// Python's `str()` and `repr()` of template values, which is what `{{ value }}` prints.
extension TemplateValue {
    /// `str(value)`; undefined prints as nothing (jinja2's default `Undefined`).
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let string): return string
        default: return representation
        }
    }

    /// `repr(value)`: how a value prints inside a list or dict.
    var representation: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "None"
        case .bool(let flag): return flag ? "True" : "False"
        case .integer(let integer): return String(integer)
        case .float(let number): return Self.pythonFloat(number)
        case .string(let string): return Self.pythonQuoted(string)
        case .list(let items): return "[" + items.map(\.representation).joined(separator: ", ") + "]"
        case .tuple(let items):
            return "(" + items.map(\.representation).joined(separator: ", ") + (items.count == 1 ? ",)" : ")")
        case .dictionary(let dictionary):
            return "{" + dictionary.entries.map { Self.pythonQuoted($0.key) + ": " + $0.value.representation }.joined(separator: ", ") + "}"
        case .namespace(let namespace): return "<Namespace " + TemplateValue.dictionary(namespace.attributes).representation + ">"
        case .function(let function): return "<function \(function.name)>"
        }
    }

    /// Python's `repr(float)`: the shortest digits that round-trip, positional for decimal
    /// exponents from -4 to 15, scientific with a signed two-digit exponent otherwise.
    static func pythonFloat(_ number: Double) -> String {
        if number.isNaN { return "nan" }
        if number.isInfinite { return number < 0 ? "-inf" : "inf" }
        if number == 0 { return number.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description is also shortest round-trip; only its layout differs from Python's.
        let swiftText = "\(number.magnitude)"
        let parts = swiftText.split(separator: "e", maxSplits: 1)
        let mantissa = String(parts[0])
        let exponent = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        var digits = Array(mantissa.replacingOccurrences(of: ".", with: ""))
        var pointPosition = (mantissa.firstIndex(of: ".").map { mantissa.distance(from: mantissa.startIndex, to: $0) } ?? mantissa.count) + exponent
        while digits.count > 1 && digits.first == "0" {
            digits.removeFirst()
            pointPosition -= 1
        }
        while digits.count > 1 && digits.last == "0" { digits.removeLast() }
        let decimalExponent = pointPosition - 1
        let sign = number < 0 ? "-" : ""
        if decimalExponent >= -4 && decimalExponent < 16 {
            if pointPosition <= 0 {
                return sign + "0." + String(repeating: "0", count: -pointPosition) + String(digits)
            }
            if pointPosition >= digits.count {
                return sign + String(digits) + String(repeating: "0", count: pointPosition - digits.count) + ".0"
            }
            return sign + String(digits[..<pointPosition]) + "." + String(digits[pointPosition...])
        }
        let fraction = digits.count > 1 ? "." + String(digits[1...]) : ""
        let exponentDigits = String(abs(decimalExponent))
        let paddedExponent = (exponentDigits.count < 2 ? "0" : "") + exponentDigits
        return sign + String(digits[0]) + fraction + "e" + (decimalExponent < 0 ? "-" : "+") + paddedExponent
    }

    /// Python's `repr(str)`: single quotes unless the text has one and no double quote.
    static func pythonQuoted(_ string: String) -> String {
        let quote: Unicode.Scalar = string.unicodeScalars.contains("'") && !string.unicodeScalars.contains("\"") ? "\"" : "'"
        var result = String.UnicodeScalarView()
        result.append(quote)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\\": result.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": result.append(contentsOf: "\\n".unicodeScalars)
            case "\r": result.append(contentsOf: "\\r".unicodeScalars)
            case "\t": result.append(contentsOf: "\\t".unicodeScalars)
            case quote: result.append("\\"); result.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
                    result.append(contentsOf: "\\x".unicodeScalars)
                    result.append(contentsOf: Self.hex(scalar.value, width: 2).unicodeScalars)
                } else {
                    result.append(scalar)
                }
            }
        }
        result.append(quote)
        return String(result)
    }

    static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
