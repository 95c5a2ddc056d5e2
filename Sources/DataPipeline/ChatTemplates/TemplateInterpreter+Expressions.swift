/// Expression evaluation: names, literals, attribute and item access, calls, operators.
extension TemplateInterpreter {
    func evaluate(_ expression: TemplateExpression) throws -> TemplateValue {
        switch expression {
        case .literal(let literal): return literal.value
        case .name(let name): return lookup(name)
        case .list(let items): return .list(try items.map(evaluate))
        case .tuple(let items): return .tuple(try items.map(evaluate))
        case .dictionary(let pairs):
            var dictionary = TemplateDictionary()
            for pair in pairs {
                guard case .string(let key) = try evaluate(pair.key) else {
                    throw ChatTemplateError(.render, "only string keys are supported in dict literals")
                }
                dictionary[key] = try evaluate(pair.value)
            }
            return .dictionary(dictionary)
        case .attribute(let base, let name):
            return try TemplateMethods.attribute(name, of: try evaluateDefined(base))
        case .item(let base, let keyExpression):
            return try TemplateMethods.item(try evaluate(keyExpression), of: try evaluateDefined(base))
        case .slice(let base, let start, let stop, let step):
            return try TemplateMethods.slice(try evaluateDefined(base),
                                             start: try start.map(evaluate), stop: try stop.map(evaluate), step: try step.map(evaluate))
        case .call(let callee, let arguments):
            let function = try evaluate(callee)
            let (positional, keywords) = try evaluate(arguments)
            switch function {
            case .function(let function): return try function.call(positional, keywords)
            case .undefined(let reason): throw ChatTemplateError.undefined(reason)
            default: throw ChatTemplateError(.render, "'\(function.typeName)' object is not callable")
            }
        case .filter(let base, let name, let arguments):
            let value = try evaluate(base)
            let (positional, keywords) = try evaluate(arguments)
            return try TemplateFilters.apply(name, to: value, positional, keywords, interpreter: self)
        case .test(let base, let name, let arguments, let negated):
            let value = try evaluate(base)
            let (positional, _) = try evaluate(arguments)
            let result = try TemplatePredicates.test(name, value, positional)
            return .bool(result != negated)
        case .not(let operand):
            return .bool(!(try evaluate(operand).isTruthy))
        case .negate(let operand):
            return try TemplateOperators.negate(try evaluate(operand))
        case .plus(let operand):
            let value = try evaluate(operand)
            guard value.number != nil else { throw ChatTemplateError(.render, "bad operand type for unary +: '\(value.typeName)'") }
            return value
        case .binary(let operation, let left, let right):
            return try TemplateOperators.apply(operation, try evaluate(left), try evaluate(right))
        case .comparison(let first, let operations):
            var left = try evaluate(first)
            for (operation, rightExpression) in operations {
                let right = try evaluate(rightExpression)
                guard try TemplateOperators.compare(operation, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .and(let left, let right):
            let leftValue = try evaluate(left)
            return leftValue.isTruthy ? try evaluate(right) : leftValue
        case .or(let left, let right):
            let leftValue = try evaluate(left)
            return leftValue.isTruthy ? leftValue : try evaluate(right)
        case .conditional(let condition, let then, let otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(then) }
            return try otherwise.map(evaluate) ?? .undefined("the inline if-expression had no else branch")
        }
    }

    /// Reading an attribute or item of an undefined value is an error in jinja2.
    private func evaluateDefined(_ expression: TemplateExpression) throws -> TemplateValue {
        let value = try evaluate(expression)
        if case .undefined(let reason) = value { throw ChatTemplateError.undefined(reason) }
        return value
    }

    func evaluate(_ arguments: TemplateArguments) throws -> ([TemplateValue], [(name: String, value: TemplateValue)]) {
        var positional = try arguments.positional.map(evaluate)
        var keywords = try arguments.keywords.map { ($0.name, try evaluate($0.value)) }
        if let splat = arguments.positionalSplat { positional += try evaluate(splat).iterated() }
        if let splat = arguments.keywordSplat {
            guard case .dictionary(let mapping) = try evaluate(splat) else {
                throw ChatTemplateError(.render, "argument after ** must be a mapping")
            }
            keywords += mapping.entries.map { ($0.key, $0.value) }
        }
        return (positional, keywords)
    }
}
