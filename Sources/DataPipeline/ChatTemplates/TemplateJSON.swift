/// The `tojson` filter as transformers defines it: Python's
/// `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
/// Non-ASCII text stays as is, dict keys keep insertion order, floats print as Python's `repr`.
enum TemplateJSON {
    struct Options {
        /// nil: one line; otherwise newlines, each level indented by this text.
        var indent: String?
        var itemSeparator: String
        var keySeparator: String
        var sortKeys = false
        /// Python's `ensure_ascii`: escape every non-ASCII character as `\uXXXX`.
        var ensureASCII = false

        init(indent: String?, separators: (item: String, key: String)? = nil, sortKeys: Bool = false, ensureASCII: Bool = false) {
            self.indent = indent
            // Python's defaults: ", " on one line, "," (no trailing space) when indenting.
            self.itemSeparator = separators?.item ?? (indent == nil ? ", " : ",")
            self.keySeparator = separators?.key ?? ": "
            self.sortKeys = sortKeys
            self.ensureASCII = ensureASCII
        }
    }

    static let maximumDepth = 256

    static func encode(_ value: TemplateValue, options: Options) throws -> String {
        var output = ""
        try append(value, options: options, depth: 0, to: &output)
        return output
    }

    private static func newline(_ options: Options, depth: Int, to output: inout String) {
        guard let indent = options.indent else { return }
        output += "\n" + String(repeating: indent, count: depth)
    }

    private static func append(_ value: TemplateValue, options: Options, depth: Int, to output: inout String) throws {
        guard depth < maximumDepth else { throw ChatTemplateError(.render, "tojson: value nested deeper than \(maximumDepth)") }
        switch value {
        case .none: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .integer(let integer): output += String(integer)
        case .float(let number):
            if number.isNaN { output += "NaN" } else if number.isInfinite { output += number < 0 ? "-Infinity" : "Infinity" } else {
                output += TemplateValue.pythonFloat(number)
            }
        case .string(let text): appendQuoted(text, asciiOnly: options.ensureASCII, to: &output)
        case .list(let items), .tuple(let items):
            guard !items.isEmpty else { output += "[]"; return }
            output += "["
            for (position, item) in items.enumerated() {
                if position > 0 { output += options.itemSeparator }
                newline(options, depth: depth + 1, to: &output)
                try append(item, options: options, depth: depth + 1, to: &output)
            }
            newline(options, depth: depth, to: &output)
            output += "]"
        case .dictionary(let dictionary):
            guard dictionary.count > 0 else { output += "{}"; return }
            output += "{"
            let keys = options.sortKeys ? dictionary.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } : dictionary.keys
            for (position, key) in keys.enumerated() {
                if position > 0 { output += options.itemSeparator }
                newline(options, depth: depth + 1, to: &output)
                appendQuoted(key, asciiOnly: options.ensureASCII, to: &output)
                output += options.keySeparator
                try append(dictionary[key] ?? .none, options: options, depth: depth + 1, to: &output)
            }
            newline(options, depth: depth, to: &output)
            output += "}"
        case .undefined, .namespace, .function:
            throw ChatTemplateError(.render, "Object of type \(value.typeName) is not JSON serializable")
        }
    }

    private static func appendQuoted(_ text: String, asciiOnly: Bool, to output: inout String) {
        var scalars = String.UnicodeScalarView()
        scalars.append("\"")
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": scalars.append(contentsOf: "\\\"".unicodeScalars)
            case "\\": scalars.append(contentsOf: "\\\\".unicodeScalars)
            case "\n": scalars.append(contentsOf: "\\n".unicodeScalars)
            case "\r": scalars.append(contentsOf: "\\r".unicodeScalars)
            case "\t": scalars.append(contentsOf: "\\t".unicodeScalars)
            case "\u{8}": scalars.append(contentsOf: "\\b".unicodeScalars)
            case "\u{C}": scalars.append(contentsOf: "\\f".unicodeScalars)
            default:
                if scalar.value < 0x20 || (asciiOnly && scalar.value > 0x7E) {
                    for unit in String(scalar).utf16 {
                        scalars.append(contentsOf: ("\\u" + TemplateValue.hex(UInt32(unit), width: 4)).unicodeScalars)
                    }
                } else {
                    scalars.append(scalar)
                }
            }
        }
        scalars.append("\"")
        output += String(scalars)
    }
}
