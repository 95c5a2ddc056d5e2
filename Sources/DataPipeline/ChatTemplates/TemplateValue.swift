/// A value while a template runs, with Python's semantics because jinja2 runs on Python:
/// truthiness, `==` (so `1 == 1.0` and `True == 1`), `str()` and `repr()` text, and jinja2's
/// default `Undefined` (prints as nothing, is false, iterates as empty, fails when used in
/// arithmetic or when an attribute is read from it).
enum TemplateValue {
    /// A missing variable, attribute or key; the text is the error to report if it is used
    /// ("'tools' is undefined").
    case undefined(String)
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
    case list([TemplateValue])
    /// A Python tuple: behaves as a list but prints with parentheses (`dict.items()` yields them).
    case tuple([TemplateValue])
    case dictionary(TemplateDictionary)
    case namespace(TemplateNamespace)
    case function(TemplateFunction)

    init(_ value: ChatValue) {
        switch value {
        case .null: self = .none
        case .bool(let flag): self = .bool(flag)
        case .integer(let integer): self = .integer(integer)
        case .double(let number): self = .float(number)
        case .string(let text): self = .string(text)
        case .array(let items): self = .list(items.map(TemplateValue.init))
        case .object(let object):
            var dictionary = TemplateDictionary()
            for (key, element) in object.entries { dictionary[key] = TemplateValue(element) }
            self = .dictionary(dictionary)
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python's `bool(value)`.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let flag): return flag
        case .integer(let integer): return integer != 0
        case .float(let number): return number != 0
        case .string(let text): return !text.isEmpty
        case .list(let items), .tuple(let items): return !items.isEmpty
        case .dictionary(let dictionary): return dictionary.count > 0
        case .namespace, .function: return true
        }
    }

    /// The numeric value of ints, floats and bools (Python's bool is an int).
    var number: Double? {
        switch self {
        case .integer(let integer): return Double(integer)
        case .float(let number): return number
        case .bool(let flag): return flag ? 1 : 0
        default: return nil
        }
    }

    /// The integer value of ints and bools.
    var integer: Int? {
        switch self {
        case .integer(let integer): return integer
        case .bool(let flag): return flag ? 1 : 0
        default: return nil
        }
    }

    /// Python's type name, for error messages that match jinja2's wording.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .integer: return "int"
        case .float: return "float"
        case .string: return "str"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dictionary: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// The items `for` walks and `list` builds: a string's characters, a dict's keys.
    func iterated() throws -> [TemplateValue] {
        switch self {
        case .undefined: return []
        case .list(let items), .tuple(let items): return items
        case .dictionary(let dictionary): return dictionary.keys.map { .string($0) }
        case .string(let text): return text.unicodeScalars.map { .string(String($0)) }
        default: throw ChatTemplateError(.render, "'\(typeName)' object is not iterable")
        }
    }

    /// Python's `==`.
    func isEqual(to other: TemplateValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let left), .string(let right)): return left.unicodeScalars.elementsEqual(right.unicodeScalars)
        case (.list(let left), .list(let right)), (.tuple(let left), .tuple(let right)):
            return left.count == right.count && zip(left, right).allSatisfy { $0.isEqual(to: $1) }
        case (.dictionary(let left), .dictionary(let right)):
            return left.count == right.count && left.keys.allSatisfy { key in
                guard let leftValue = left[key], let rightValue = right[key] else { return false }
                return leftValue.isEqual(to: rightValue)
            }
        case (.namespace(let left), .namespace(let right)): return left === right
        default:
            if let left = integer, let right = other.integer { return left == right }
            if let left = number, let right = other.number { return left == right }
            return false
        }
    }

    /// Python's `<`; other orderings derive from it and `==`.
    func isLess(than other: TemplateValue) throws -> Bool {
        switch (self, other) {
        case (.string(let left), .string(let right)):
            return left.unicodeScalars.lexicographicallyPrecedes(right.unicodeScalars)
        case (.list(let left), .list(let right)), (.tuple(let left), .tuple(let right)):
            for (leftItem, rightItem) in zip(left, right) where !leftItem.isEqual(to: rightItem) {
                return try leftItem.isLess(than: rightItem)
            }
            return left.count < right.count
        default:
            if let left = integer, let right = other.integer { return left < right }
            if let left = number, let right = other.number { return left < right }
            if case .undefined(let name) = self { throw ChatTemplateError.undefined(name) }
            if case .undefined(let name) = other { throw ChatTemplateError.undefined(name) }
            throw ChatTemplateError(.render, "'<' not supported between instances of '\(typeName)' and '\(other.typeName)'")
        }
    }

    /// Python's `x in container`.
    func contains(_ element: TemplateValue) throws -> Bool {
        switch self {
        case .string(let text):
            guard case .string(let needle) = element else {
                throw ChatTemplateError(.render, "'in <string>' requires string as left operand, not \(element.typeName)")
            }
            return TemplateStrings.find(needle, in: text) != nil
        case .list(let items), .tuple(let items): return items.contains { $0.isEqual(to: element) }
        case .dictionary(let dictionary):
            guard case .string(let key) = element else { return false }
            return dictionary[key] != nil
        case .undefined: return false
        default: throw ChatTemplateError(.render, "argument of type '\(typeName)' is not iterable")
        }
    }
}

/// A Python dict with string keys, in insertion order.
struct TemplateDictionary {
    private(set) var keys: [String] = []
    private var storage: [String: TemplateValue] = [:]

    subscript(key: String) -> TemplateValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    var count: Int { keys.count }
    var values: [TemplateValue] { keys.map { storage[$0] ?? .none } }
    var entries: [(key: String, value: TemplateValue)] { keys.map { ($0, storage[$0] ?? .none) } }
}

/// jinja2's `namespace(...)`: the one mutable object, so a loop can carry state out of its scope.
final class TemplateNamespace {
    var attributes = TemplateDictionary()
}

/// Something callable: a global such as `range`, a macro, or a bound method such as `text.strip`.
struct TemplateFunction {
    let name: String
    let call: (_ positional: [TemplateValue], _ keywords: [(name: String, value: TemplateValue)]) throws -> TemplateValue
}
