/// jinja2's tests (`value is name`, `selectattr('role', 'equalto', 'user')`).
enum TemplatePredicates {
    static func test(_ name: String, _ value: TemplateValue, _ arguments: [TemplateValue]) throws -> Bool {
        func argument() throws -> TemplateValue {
            guard let first = arguments.first else { throw ChatTemplateError(.render, "test '\(name)' needs an argument") }
            return first
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none":
            if case .none = value { return true }
            return false
        case "boolean":
            if case .bool = value { return true }
            return false
        case "true":
            if case .bool(true) = value { return true }
            return false
        case "false":
            if case .bool(false) = value { return true }
            return false
        case "string":
            if case .string = value { return true }
            return false
        case "number":
            switch value {
            case .integer, .float, .bool: return true
            default: return false
            }
        case "integer":
            if case .integer = value { return true }
            return false
        case "float":
            if case .float = value { return true }
            return false
        case "mapping":
            if case .dictionary = value { return true }
            return false
        case "sequence":
            switch value {
            case .string, .list, .tuple, .dictionary: return true
            default: return false
            }
        case "iterable":
            switch value {
            case .string, .list, .tuple, .dictionary, .undefined: return true
            default: return false
            }
        case "callable":
            if case .function = value { return true }
            return false
        case "equalto", "eq", "==": return value.isEqual(to: try argument())
        case "ne", "!=": return !value.isEqual(to: try argument())
        case "lessthan", "lt", "<": return try value.isLess(than: try argument())
        case "greaterthan", "gt", ">": return try argument().isLess(than: value)
        case "le", "<=":
            let other = try argument()
            return try value.isLess(than: other) || value.isEqual(to: other)
        case "ge", ">=":
            let other = try argument()
            return try other.isLess(than: value) || value.isEqual(to: other)
        case "in": return try argument().contains(value)
        case "sameas":
            let other = try argument()
            switch (value, other) {
            case (.none, .none): return true
            case (.bool(let left), .bool(let right)): return left == right
            case (.namespace(let left), .namespace(let right)): return left === right
            default: return false
            }
        case "odd", "even":
            guard let integer = value.integer else { throw ChatTemplateError(.render, "test '\(name)' needs an integer, not \(value.typeName)") }
            return (integer % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let integer = value.integer, let divisor = try argument().integer, divisor != 0 else {
                throw ChatTemplateError(.render, "test 'divisibleby' needs non-zero integers")
            }
            return integer % divisor == 0
        case "lower", "upper":
            guard case .string(let text) = value else { return false }
            return name == "lower" ? text.lowercased() == text : text.uppercased() == text
        default:
            throw ChatTemplateError(.render, "no test named '\(name)'")
        }
    }
}
