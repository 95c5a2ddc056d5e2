/// Attribute, item and slice access, and the Python methods templates call on strings, dicts
/// and lists (`content.strip()`, `message.get('tool_calls')`, `tool.items()`).
///
/// Like jinja2's `ImmutableSandboxedEnvironment`, methods that would change a list or dict
/// (`append`, `pop`, `update`, …) are refused.
enum TemplateMethods {
    private static let mutatingMethods: Set<String> = ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
                                                       "update", "setdefault", "popitem"]

    /// `value.name`: a method first, then an item (for dicts and namespaces), as jinja2's getattr.
    static func attribute(_ name: String, of value: TemplateValue) throws -> TemplateValue {
        if let method = try method(name, of: value) { return .function(method) }
        switch value {
        case .dictionary(let dictionary):
            return dictionary[name] ?? .undefined("'dict object' has no attribute '\(name)'")
        case .namespace(let namespace):
            return namespace.attributes[name] ?? .undefined("'Namespace' object has no attribute '\(name)'")
        default:
            return .undefined("'\(value.typeName) object' has no attribute '\(name)'")
        }
    }

    /// `value[key]`: an item first, then an attribute, as jinja2's getitem.
    static func item(_ key: TemplateValue, of value: TemplateValue) throws -> TemplateValue {
        switch (value, key) {
        case (.dictionary(let dictionary), .string(let name)):
            if let found = dictionary[name] { return found }
            return try attribute(name, of: value)
        case (.list(let items), _), (.tuple(let items), _):
            guard let position = key.integer else {
                if case .undefined(let reason) = key { throw ChatTemplateError.undefined(reason) }
                if case .string(let name) = key { return try attribute(name, of: value) }
                throw ChatTemplateError(.render, "list indices must be integers or slices, not \(key.typeName)")
            }
            let index = position < 0 ? position + items.count : position
            return items.indices.contains(index) ? items[index] : .undefined("'\(value.typeName) object' has no element \(position)")
        case (.string(let text), _):
            guard let position = key.integer else {
                if case .string(let name) = key { return try attribute(name, of: value) }
                throw ChatTemplateError(.render, "string indices must be integers, not '\(key.typeName)'")
            }
            let scalars = TemplateStrings.scalars(text)
            let index = position < 0 ? position + scalars.count : position
            return scalars.indices.contains(index) ? .string(String(scalars[index])) : .undefined("'str object' has no element \(position)")
        case (_, .string(let name)):
            return try attribute(name, of: value)
        default:
            return .undefined("'\(value.typeName) object' has no element \(key.representation)")
        }
    }

    /// `value[start:stop:step]` with Python's clamping and negative indices.
    static func slice(_ value: TemplateValue, start: TemplateValue?, stop: TemplateValue?, step: TemplateValue?) throws -> TemplateValue {
        func bound(_ value: TemplateValue?) throws -> Int? {
            switch value {
            case nil, .none?, .undefined?: return nil
            case let value?:
                guard let integer = value.integer else { throw ChatTemplateError(.render, "slice indices must be integers or None") }
                return integer
            }
        }
        let stepValue = try bound(step) ?? 1
        guard stepValue != 0 else { throw ChatTemplateError(.render, "slice step cannot be zero") }
        func indices(count: Int) throws -> [Int] {
            func clamp(_ index: Int?, _ fallback: Int) -> Int {
                guard var index else { return fallback }
                if index < 0 { index += count }
                return stepValue > 0 ? min(max(index, 0), count) : min(max(index, -1), count - 1)
            }
            let from = clamp(try bound(start), stepValue > 0 ? 0 : count - 1)
            let to = clamp(try bound(stop), stepValue > 0 ? count : -1)
            return Array(stride(from: from, to: to, by: stepValue))
        }
        switch value {
        case .list(let items): return .list(try indices(count: items.count).map { items[$0] })
        case .tuple(let items): return .tuple(try indices(count: items.count).map { items[$0] })
        case .string(let text):
            let scalars = TemplateStrings.scalars(text)
            return .string(TemplateStrings.string(try indices(count: scalars.count).map { scalars[$0] }))
        default:
            throw ChatTemplateError(.render, "'\(value.typeName)' object is not subscriptable")
        }
    }

    private static func argument(_ arguments: [TemplateValue], _ position: Int) -> TemplateValue? {
        position < arguments.count ? arguments[position] : nil
    }

    /// An optional string argument: absent or `None` gives nil.
    private static func optionalString(_ arguments: [TemplateValue], _ position: Int, method: String) throws -> String? {
        switch argument(arguments, position) {
        case nil, .none?: return nil
        case .string(let text)?: return text
        case let other?: throw ChatTemplateError(.render, "\(method)() argument must be str or None, not \(other.typeName)")
        }
    }

    private static func requiredString(_ arguments: [TemplateValue], _ position: Int, method: String) throws -> String {
        guard case .string(let text)? = argument(arguments, position) else {
            throw ChatTemplateError(.render, "\(method)() needs a string argument")
        }
        return text
    }

    private static func method(_ name: String, of value: TemplateValue) throws -> TemplateFunction? {
        switch value {
        case .string(let text): return stringMethod(name, text)
        case .dictionary(let dictionary): return dictionaryMethod(name, dictionary)
        case .list, .tuple:
            if mutatingMethods.contains(name) {
                return TemplateFunction(name: name) { _, _ in
                    throw ChatTemplateError(.render, "access to attribute '\(name)' of '\(value.typeName)' object is unsafe.")
                }
            }
            return nil
        default: return nil
        }
    }

    private static func dictionaryMethod(_ name: String, _ dictionary: TemplateDictionary) -> TemplateFunction? {
        switch name {
        case "items": return TemplateFunction(name: name) { _, _ in .list(dictionary.entries.map { .tuple([.string($0.key), $0.value]) }) }
        case "keys": return TemplateFunction(name: name) { _, _ in .list(dictionary.keys.map { .string($0) }) }
        case "values": return TemplateFunction(name: name) { _, _ in .list(dictionary.values) }
        case "get":
            return TemplateFunction(name: name) { arguments, _ in
                guard case .string(let key)? = argument(arguments, 0) else { return argument(arguments, 1) ?? .none }
                return dictionary[key] ?? argument(arguments, 1) ?? .none
            }
        case "copy": return TemplateFunction(name: name) { _, _ in .dictionary(dictionary) }
        default:
            guard mutatingMethods.contains(name) else { return nil }
            return TemplateFunction(name: name) { _, _ in
                throw ChatTemplateError(.render, "access to attribute '\(name)' of 'dict' object is unsafe.")
            }
        }
    }

    private static func stringMethod(_ name: String, _ text: String) -> TemplateFunction? {
        let body: ([TemplateValue]) throws -> TemplateValue
        switch name {
        case "strip", "lstrip", "rstrip":
            body = { arguments in
                .string(TemplateStrings.strip(text, characters: try optionalString(arguments, 0, method: name),
                                              leading: name != "rstrip", trailing: name != "lstrip"))
            }
        case "split", "rsplit":
            body = { arguments in
                let separator = try optionalString(arguments, 0, method: name)
                let limit = argument(arguments, 1)?.integer ?? -1
                return .list(try TemplateStrings.split(text, separator: separator, maximumSplits: limit, fromRight: name == "rsplit").map { .string($0) })
            }
        case "startswith", "endswith":
            body = { arguments in
                let candidates: [TemplateValue]
                switch argument(arguments, 0) {
                case .tuple(let items)?, .list(let items)?: candidates = items
                case let single?: candidates = [single]
                case nil: throw ChatTemplateError(.render, "\(name)() takes at least 1 argument (0 given)")
                }
                let scalars = TemplateStrings.scalars(text)
                for candidate in candidates {
                    guard case .string(let affix) = candidate else {
                        throw ChatTemplateError(.render, "\(name) first arg must be str or a tuple of str, not \(candidate.typeName)")
                    }
                    let affixScalars = TemplateStrings.scalars(affix)
                    let matches = name == "startswith" ? scalars.starts(with: affixScalars) : scalars.reversed().starts(with: affixScalars.reversed())
                    if matches { return .bool(true) }
                }
                return .bool(false)
            }
        case "upper": body = { _ in .string(text.uppercased()) }
        case "lower": body = { _ in .string(text.lowercased()) }
        case "title": body = { _ in .string(TemplateStrings.title(text)) }
        case "capitalize": body = { _ in .string(TemplateStrings.capitalize(text)) }
        case "replace":
            body = { arguments in
                .string(TemplateStrings.replace(text, try requiredString(arguments, 0, method: name), try requiredString(arguments, 1, method: name),
                                                count: argument(arguments, 2)?.integer ?? -1))
            }
        case "find":
            body = { arguments in .integer(TemplateStrings.find(try requiredString(arguments, 0, method: name), in: text) ?? -1) }
        case "count":
            body = { arguments in
                let needle = try requiredString(arguments, 0, method: name)
                return .integer(try TemplateStrings.split(text, needle) - 1)
            }
        case "join":
            body = { arguments in
                .string(try (argument(arguments, 0) ?? .list([])).iterated().map(\.text).joined(separator: text))
            }
        case "isdigit": body = { _ in .bool(!text.isEmpty && text.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal }) }
        case "isspace": body = { _ in .bool(!text.isEmpty && text.unicodeScalars.allSatisfy(TemplateStrings.isSpace)) }
        default: return nil
        }
        return TemplateFunction(name: name) { arguments, _ in try body(arguments) }
    }
}

private extension TemplateStrings {
    /// The number of pieces `text.split(needle)` makes (for `str.count`).
    static func split(_ text: String, _ needle: String) throws -> Int {
        try split(text, separator: needle, maximumSplits: -1, fromRight: false).count
    }
}
