import Foundation

/// Binary, unary and comparison operators with Python's results and Python's error wording.
enum TemplateOperators {
    /// Longest string or list a `*` may build; a template should never need more.
    static let maximumRepeatedLength = 10_000_000

    static func apply(_ operation: BinaryOperator, _ left: TemplateValue, _ right: TemplateValue) throws -> TemplateValue {
        if operation == .concatenate { return .string(left.text + right.text) }
        if case .undefined(let reason) = left { throw ChatTemplateError.undefined(reason) }
        if case .undefined(let reason) = right { throw ChatTemplateError.undefined(reason) }
        switch (operation, left, right) {
        case (.add, .string(let a), .string(let b)): return .string(a + b)
        case (.add, .list(let a), .list(let b)): return .list(a + b)
        case (.add, .tuple(let a), .tuple(let b)): return .tuple(a + b)
        case (.multiply, .string(let text), _) where right.integer != nil:
            return .string(String(repeating: text, count: try repeatCount(right.integer ?? 0, unit: text.unicodeScalars.count)))
        case (.multiply, _, .string(let text)) where left.integer != nil:
            return .string(String(repeating: text, count: try repeatCount(left.integer ?? 0, unit: text.unicodeScalars.count)))
        case (.multiply, .list(let items), _) where right.integer != nil:
            let count = try repeatCount(right.integer ?? 0, unit: items.count)
            return .list(Array([[TemplateValue]](repeating: items, count: count).joined()))
        default: break
        }
        if let a = left.integer, let b = right.integer, operation != .divide {
            return try integerArithmetic(operation, a, b)
        }
        guard let a = left.number, let b = right.number else {
            if operation == .add, case .string = left {
                throw ChatTemplateError(.render, "can only concatenate str (not \"\(right.typeName)\") to str")
            }
            throw ChatTemplateError(.render, "unsupported operand type(s) for \(operation.rawValue): '\(left.typeName)' and '\(right.typeName)'")
        }
        switch operation {
        case .add: return .float(a + b)
        case .subtract: return .float(a - b)
        case .multiply: return .float(a * b)
        case .divide:
            guard b != 0 else { throw ChatTemplateError(.render, "division by zero") }
            return .float(a / b)
        case .floorDivide:
            guard b != 0 else { throw ChatTemplateError(.render, "float floor division by zero") }
            return .float((a / b).rounded(.down))
        case .modulo:
            guard b != 0 else { throw ChatTemplateError(.render, "float modulo") }
            let remainder = a.truncatingRemainder(dividingBy: b)
            return .float(remainder != 0 && (remainder < 0) != (b < 0) ? remainder + b : remainder)
        case .power: return .float(pow(a, b))
        case .concatenate: return .string(left.text + right.text)
        }
    }

    private static func repeatCount(_ count: Int, unit: Int) throws -> Int {
        guard count > 0 else { return 0 }
        guard unit == 0 || count <= maximumRepeatedLength / unit else {
            throw ChatTemplateError(.render, "repetition longer than \(maximumRepeatedLength) items")
        }
        return count
    }

    private static func integerArithmetic(_ operation: BinaryOperator, _ a: Int, _ b: Int) throws -> TemplateValue {
        let result: (partialValue: Int, overflow: Bool)
        switch operation {
        case .add: result = a.addingReportingOverflow(b)
        case .subtract: result = a.subtractingReportingOverflow(b)
        case .multiply: result = a.multipliedReportingOverflow(by: b)
        case .floorDivide, .modulo:
            guard b != 0 else { throw ChatTemplateError(.render, "integer division or modulo by zero") }
            guard !(a == Int.min && b == -1) else { throw overflow(operation) }
            var quotient = a / b
            var remainder = a % b
            // Python rounds the quotient toward negative infinity; the remainder takes b's sign.
            if remainder != 0 && (remainder < 0) != (b < 0) {
                quotient -= 1
                remainder += b
            }
            return .integer(operation == .floorDivide ? quotient : remainder)
        case .power:
            guard b >= 0 else { return .float(pow(Double(a), Double(b))) }
            var value = 1
            for _ in 0..<b {
                let step = value.multipliedReportingOverflow(by: a)
                guard !step.overflow else { throw overflow(operation) }
                value = step.partialValue
                if value == 0 || value == 1 && a == 1 { break }
            }
            return .integer(value)
        case .divide, .concatenate:
            preconditionFailure("handled by the caller")
        }
        guard !result.overflow else { throw overflow(operation) }
        return .integer(result.partialValue)
    }

    private static func overflow(_ operation: BinaryOperator) -> ChatTemplateError {
        ChatTemplateError(.render, "integer overflow in '\(operation.rawValue)'")
    }

    static func negate(_ value: TemplateValue) throws -> TemplateValue {
        if let integer = value.integer {
            guard integer != Int.min else { throw overflow(.subtract) }
            return .integer(-integer)
        }
        if case .float(let number) = value { return .float(-number) }
        if case .undefined(let reason) = value { throw ChatTemplateError.undefined(reason) }
        throw ChatTemplateError(.render, "bad operand type for unary -: '\(value.typeName)'")
    }

    static func compare(_ operation: ComparisonOperator, _ left: TemplateValue, _ right: TemplateValue) throws -> Bool {
        switch operation {
        case .equal: return left.isEqual(to: right)
        case .notEqual: return !left.isEqual(to: right)
        case .less: return try left.isLess(than: right)
        case .greater: return try right.isLess(than: left)
        case .lessOrEqual: return try left.isLess(than: right) || left.isEqual(to: right)
        case .greaterOrEqual: return try right.isLess(than: left) || left.isEqual(to: right)
        case .contains: return try right.contains(left)
        case .notContains: return !(try right.contains(left))
        }
    }
}
