import Foundation

/// One JSON object on one line, with keys in the order they were added: the format of
/// `metrics.jsonl` and of every `--json` result line (DESIGN §4–§5).
public struct JSONLine: Sendable {
    private var fields: [String] = []

    public init() {}

    public init(_ pairs: KeyValuePairs<String, Any>) {
        for (key, value) in pairs { add(key, value) }
    }

    /// Adds `"key": value`. Numbers that are not finite become `null`; arrays of numbers are
    /// written as arrays; anything else is written as a string.
    public mutating func add(_ key: String, _ value: Any) {
        fields.append("\(JSONLine.quoted(key)):\(JSONLine.encode(value))")
    }

    public var text: String { "{" + fields.joined(separator: ",") + "}" }

    static func encode(_ value: Any) -> String {
        switch value {
        case let number as Double: return number.isFinite ? String(format: "%.9g", number) : "null"
        case let number as Float: return encode(Double(number))
        case let number as Int: return String(number)
        case let flag as Bool: return flag ? "true" : "false"
        case let text as String: return quoted(text)
        case let numbers as [Double]: return "[" + numbers.map(encode).joined(separator: ",") + "]"
        case let numbers as [Int]: return "[" + numbers.map(String.init).joined(separator: ",") + "]"
        default: return quoted("\(value)")
        }
    }

    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
