import Foundation

/// jinja2's built-in filters that chat templates use, plus transformers' `tojson`.
enum TemplateFilters {
    /// Arguments of one filter call, read by position or keyword as Python would bind them.
    struct Arguments {
        let positional: [TemplateValue]
        let keywords: [(name: String, value: TemplateValue)]

        /// The argument at `position` (0 is the first after the filtered value) or named `name`.
        func value(_ position: Int, _ name: String) -> TemplateValue? {
            if position < positional.count { return positional[position] }
            return keywords.first { $0.name == name }?.value
        }

        func string(_ position: Int, _ name: String, filter: String) throws -> String? {
            switch value(position, name) {
            case nil, .none?: return nil
            case .string(let text)?: return text
            case let other?: throw ChatTemplateError(.render, "\(filter): '\(name)' must be a string, not \(other.typeName)")
            }
        }

        func flag(_ position: Int, _ name: String) -> Bool { value(position, name)?.isTruthy ?? false }
    }

    static func apply(_ name: String, to value: TemplateValue, _ positional: [TemplateValue],
                      _ keywords: [(name: String, value: TemplateValue)], interpreter: TemplateInterpreter) throws -> TemplateValue {
        let arguments = Arguments(positional: positional, keywords: keywords)
        switch name {
        case "trim":
            return .string(TemplateStrings.strip(value.text, characters: try arguments.string(0, "chars", filter: name), leading: true, trailing: true))
        case "upper": return .string(value.text.uppercased())
        case "lower": return .string(value.text.lowercased())
        case "title": return .string(TemplateStrings.title(value.text))
        case "capitalize": return .string(TemplateStrings.capitalize(value.text))
        case "string": return .string(value.text)
        case "safe": return .string(value.text)
        case "length", "count": return .integer(try length(value))
        case "first":
            return try value.iterated().first ?? .undefined("No first item, sequence was empty.")
        case "last":
            return try value.iterated().last ?? .undefined("No last item, sequence was empty.")
        case "list": return .list(try value.iterated())
        case "reverse":
            if case .string(let text) = value { return .string(TemplateStrings.string(text.unicodeScalars.reversed())) }
            return .list(try value.iterated().reversed())
        case "join":
            var items = try value.iterated()
            if let attribute = try arguments.string(1, "attribute", filter: name) {
                items = try items.map { try lookupPath(attribute, in: $0) }
            }
            return .string(items.map(\.text).joined(separator: try arguments.string(0, "d", filter: name) ?? ""))
        case "default", "d":
            let fallback = arguments.value(0, "default_value") ?? .string("")
            let useFallback = value.isUndefined || (arguments.flag(1, "boolean") && !value.isTruthy)
            return useFallback ? fallback : value
        case "tojson": return .string(try toJSON(value, arguments))
        case "items":
            switch value {
            case .dictionary(let dictionary): return .list(dictionary.entries.map { .tuple([.string($0.key), $0.value]) })
            case .undefined: return .list([])
            default: throw ChatTemplateError(.render, "Can only get item pairs from a mapping.")
            }
        case "replace":
            guard let old = try arguments.string(0, "old", filter: name), let new = try arguments.string(1, "new", filter: name) else {
                throw ChatTemplateError(.render, "replace needs the old and the new text")
            }
            return .string(TemplateStrings.replace(value.text, old, new, count: arguments.value(2, "count")?.integer ?? -1))
        case "indent": return .string(try indent(value.text, arguments))
        case "int": return integer(value, default: arguments.value(0, "default") ?? .integer(0))
        case "float": return float(value, default: arguments.value(0, "default") ?? .float(0))
        case "abs":
            if let integer = value.integer { return integer == Int.min ? .float(Double(integer).magnitude) : .integer(abs(integer)) }
            guard let number = value.number else { throw ChatTemplateError(.render, "bad operand type for abs(): '\(value.typeName)'") }
            return .float(number.magnitude)
        case "round":
            guard let number = value.number else { throw ChatTemplateError(.render, "round needs a number, not \(value.typeName)") }
            let precision = arguments.value(0, "precision")?.integer ?? 0
            let scale = pow(10, Double(precision))
            let method = try arguments.string(1, "method", filter: name) ?? "common"
            // "common" is Python's round(): halves go to the even neighbour.
            let rule: FloatingPointRoundingRule = method == "ceil" ? .up : method == "floor" ? .down : .toNearestOrEven
            return .float((number * scale).rounded(rule) / scale)
        case "unique":
            var seen: [TemplateValue] = []
            for item in try value.iterated() where !seen.contains(where: { sortKey($0).isEqual(to: sortKey(item)) }) { seen.append(item) }
            return .list(seen)
        case "sort": return try sort(value, arguments)
        case "sum":
            var total = arguments.value(1, "start") ?? .integer(0)
            let attribute = try arguments.string(0, "attribute", filter: name)
            for item in try value.iterated() {
                total = try TemplateOperators.apply(.add, total, try attribute.map { try lookupPath($0, in: item) } ?? item)
            }
            return total
        case "min", "max":
            let items = try value.iterated().map { ($0, sortKey($0)) }
            guard var best = items.first else { return .undefined("No \(name) item, sequence was empty.") }
            for item in items.dropFirst() where try name == "min" ? item.1.isLess(than: best.1) : best.1.isLess(than: item.1) { best = item }
            return best.0
        case "wordcount": return .integer(try TemplateStrings.split(value.text, separator: nil, maximumSplits: -1, fromRight: false).count)
        case "escape", "e": return .string(escapeHTML(value.text))
        case "map": return .list(try map(value, arguments, interpreter: interpreter))
        case "select", "reject", "selectattr", "rejectattr":
            return .list(try select(value, arguments, byAttribute: name.hasSuffix("attr"), keep: name.hasPrefix("select")))
        default:
            throw ChatTemplateError(.render, "no filter named '\(name)'")
        }
    }

    static func length(_ value: TemplateValue) throws -> Int {
        switch value {
        case .string(let text): return text.unicodeScalars.count
        case .list(let items), .tuple(let items): return items.count
        case .dictionary(let dictionary): return dictionary.count
        case .undefined: return 0
        default: throw ChatTemplateError(.render, "object of type '\(value.typeName)' has no len()")
        }
    }

    /// `a.b.c` or `a.0` looked up item-first, as jinja2's attribute getters for filters do.
    static func lookupPath(_ path: String, in value: TemplateValue) throws -> TemplateValue {
        var current = value
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            if current.isUndefined { return current }
            let key: TemplateValue = Int(part).map { .integer($0) } ?? .string(String(part))
            current = try TemplateMethods.item(key, of: current)
        }
        return current
    }

    private static func toJSON(_ value: TemplateValue, _ arguments: Arguments) throws -> String {
        // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
        var indent: String?
        switch arguments.value(1, "indent") {
        case .integer(let width)?: indent = String(repeating: " ", count: max(0, width))
        case .string(let text)?: indent = text
        default: indent = nil
        }
        var separators: (item: String, key: String)?
        if let pair = try arguments.value(2, "separators")?.iterated(), pair.count == 2 {
            separators = (pair[0].text, pair[1].text)
        }
        let options = TemplateJSON.Options(indent: indent, separators: separators, sortKeys: arguments.flag(3, "sort_keys"),
                                           ensureASCII: arguments.flag(0, "ensure_ascii"))
        return try TemplateJSON.encode(value, options: options)
    }

    private static func indent(_ text: String, _ arguments: Arguments) throws -> String {
        let indentation: String
        switch arguments.value(0, "width") {
        case .string(let custom)?: indentation = custom
        case let width?: indentation = String(repeating: " ", count: max(0, width.integer ?? 4))
        case nil: indentation = "    "
        }
        // jinja2 appends a newline before splitting so a trailing newline survives.
        let lines = TemplateStrings.splitLines(text + "\n")
        var result: String
        if arguments.flag(2, "blank") {
            result = lines.joined(separator: "\n" + indentation)
        } else {
            result = lines.first ?? ""
            let rest = lines.dropFirst()
            if !rest.isEmpty {
                result += "\n" + rest.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
            }
        }
        return arguments.flag(1, "first") ? indentation + result : result
    }

    private static func integer(_ value: TemplateValue, default fallback: TemplateValue) -> TemplateValue {
        switch value {
        case .integer, .bool: return .integer(value.integer ?? 0)
        case .float(let number):
            guard number.isFinite, let integer = Int(exactly: number.rounded(.towardZero)) else { return fallback }
            return .integer(integer)
        case .string(let text):
            let trimmed = TemplateStrings.strip(text, characters: nil, leading: true, trailing: true).replacingOccurrences(of: "_", with: "")
            if let integer = Int(trimmed) { return .integer(integer) }
            if let number = Double(trimmed), number.isFinite, let integer = Int(exactly: number.rounded(.towardZero)) { return .integer(integer) }
            return fallback
        default: return fallback
        }
    }

    private static func float(_ value: TemplateValue, default fallback: TemplateValue) -> TemplateValue {
        switch value {
        case .integer, .bool, .float: return .float(value.number ?? 0)
        case .string(let text):
            return Double(TemplateStrings.strip(text, characters: nil, leading: true, trailing: true)).map { .float($0) } ?? fallback
        default: return fallback
        }
    }

    /// Strings compare case-insensitively in `sort`, `unique`, `min` and `max` by default.
    private static func sortKey(_ value: TemplateValue) -> TemplateValue {
        if case .string(let text) = value { return .string(text.lowercased()) }
        return value
    }

    private static func sort(_ value: TemplateValue, _ arguments: Arguments) throws -> TemplateValue {
        let reverse = arguments.flag(0, "reverse")
        let caseSensitive = arguments.flag(1, "case_sensitive")
        let attribute = try arguments.string(2, "attribute", filter: "sort")
        let keyed = try value.iterated().map { item -> (TemplateValue, TemplateValue) in
            let key = try attribute.map { try lookupPath($0, in: item) } ?? item
            return (item, caseSensitive ? key : sortKey(key))
        }
        // A stable sort, as Python's; reversing keeps equal items in their original order too.
        let sorted = try keyed.enumerated().sorted { left, right in
            if try left.element.1.isLess(than: right.element.1) { return !reverse }
            if try right.element.1.isLess(than: left.element.1) { return reverse }
            return left.offset < right.offset
        }
        return .list(sorted.map(\.element.0))
    }

    private static func map(_ value: TemplateValue, _ arguments: Arguments, interpreter: TemplateInterpreter) throws -> [TemplateValue] {
        let items = try value.iterated()
        if let attribute = arguments.keywords.first(where: { $0.name == "attribute" })?.value.text {
            let fallback = arguments.keywords.first { $0.name == "default" }?.value
            return try items.map { item in
                let found = try lookupPath(attribute, in: item)
                return found.isUndefined ? fallback ?? found : found
            }
        }
        guard case .string(let filter)? = arguments.positional.first else {
            throw ChatTemplateError(.render, "map needs a filter name or attribute=")
        }
        let rest = Array(arguments.positional.dropFirst())
        return try items.map { try apply(filter, to: $0, rest, arguments.keywords, interpreter: interpreter) }
    }

    private static func select(_ value: TemplateValue, _ arguments: Arguments, byAttribute: Bool, keep: Bool) throws -> [TemplateValue] {
        var remaining = arguments.positional
        var attribute: String?
        if byAttribute {
            guard case .string(let name)? = remaining.first else { throw ChatTemplateError(.render, "selectattr needs an attribute name") }
            attribute = name
            remaining.removeFirst()
        }
        let test: String? = remaining.isEmpty ? nil : remaining.removeFirst().text
        return try value.iterated().filter { item in
            let subject = try attribute.map { try lookupPath($0, in: item) } ?? item
            let passes = try test.map { try TemplatePredicates.test($0, subject, remaining) } ?? subject.isTruthy
            return passes == keep
        }
    }

    private static func escapeHTML(_ text: String) -> String {
        var result = ""
        for character in text.unicodeScalars {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&#34;"
            case "'": result += "&#39;"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }
}
