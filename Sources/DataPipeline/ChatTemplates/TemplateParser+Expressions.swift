/// Expressions, with jinja2's precedence (loosest first): `x if c else y`, `or`, `and`, `not`,
/// comparisons and `in`, `+ -`, `~`, `* / // %`, `**`, unary `- +`, then postfix `.a [i] (…)`
/// and, binding tighter than any binary operator, filters `|f` and tests `is t`.
extension TemplateParser {
    mutating func parseExpression(allowConditional: Bool = true) throws -> TemplateExpression {
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maximumDepth else { throw failure("expression nested deeper than \(Self.maximumDepth)") }
        return allowConditional ? try parseConditional() : try parseOr()
    }

    /// `a, b` without parentheses, as `set` accepts; one item stays a plain expression.
    mutating func parseTupleOrExpression() throws -> TemplateExpression {
        let first = try parseExpression()
        guard isSymbol(",") else { return first }
        var items = [first]
        while skipSymbol(",") {
            if current.kind == .blockEnd { break }
            items.append(try parseExpression())
        }
        return .tuple(items)
    }

    private mutating func parseConditional() throws -> TemplateExpression {
        var expression = try parseOr()
        while skipName("if") {
            let condition = try parseOr()
            let otherwise = skipName("else") ? try parseConditional() : nil
            expression = .conditional(condition: condition, then: expression, otherwise: otherwise)
        }
        return expression
    }

    private mutating func parseOr() throws -> TemplateExpression {
        var left = try parseAnd()
        while skipName("or") { left = .or(left, try parseAnd()) }
        return left
    }

    private mutating func parseAnd() throws -> TemplateExpression {
        var left = try parseNot()
        while skipName("and") { left = .and(left, try parseNot()) }
        return left
    }

    private mutating func parseNot() throws -> TemplateExpression {
        if skipName("not") { return .not(try parseNot()) }
        return try parseComparison()
    }

    private mutating func parseComparison() throws -> TemplateExpression {
        let first = try parseSum()
        var operations: [(ComparisonOperator, TemplateExpression)] = []
        while true {
            if case .symbol(let symbol) = current.kind, let comparison = ComparisonOperator(rawValue: symbol) {
                _ = advance()
                operations.append((comparison, try parseSum()))
            } else if skipName("in") {
                operations.append((.contains, try parseSum()))
            } else if isName("not"), index + 1 < tokens.count, tokens[index + 1].kind == .name("in") {
                index += 2
                operations.append((.notContains, try parseSum()))
            } else {
                break
            }
        }
        return operations.isEmpty ? first : .comparison(first, operations)
    }

    private mutating func parseSum() throws -> TemplateExpression {
        var left = try parseConcatenation()
        while true {
            if skipSymbol("+") {
                left = .binary(.add, left, try parseConcatenation())
            } else if skipSymbol("-") {
                left = .binary(.subtract, left, try parseConcatenation())
            } else {
                return left
            }
        }
    }

    private mutating func parseConcatenation() throws -> TemplateExpression {
        var left = try parseProduct()
        while skipSymbol("~") { left = .binary(.concatenate, left, try parseProduct()) }
        return left
    }

    private mutating func parseProduct() throws -> TemplateExpression {
        var left = try parsePower()
        while case .symbol(let symbol) = current.kind, ["*", "/", "//", "%"].contains(symbol),
              let operation = BinaryOperator(rawValue: symbol) {
            _ = advance()
            left = .binary(operation, left, try parsePower())
        }
        return left
    }

    private mutating func parsePower() throws -> TemplateExpression {
        var left = try parseUnary(withFilters: true)
        while skipSymbol("**") { left = .binary(.power, left, try parseUnary(withFilters: true)) }
        return left
    }

    private mutating func parseUnary(withFilters: Bool) throws -> TemplateExpression {
        var expression: TemplateExpression
        if skipSymbol("-") {
            expression = .negate(try parseUnary(withFilters: false))
        } else if skipSymbol("+") {
            expression = .plus(try parseUnary(withFilters: false))
        } else {
            expression = try parsePrimary()
        }
        expression = try parsePostfix(expression)
        return withFilters ? try parseFiltersAndTests(expression) : expression
    }

    private mutating func parsePrimary() throws -> TemplateExpression {
        let token = advance()
        switch token.kind {
        case .name(let name):
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name)
            }
        case .string(var text):
            while case .string(let next) = current.kind {
                text += next
                _ = advance()
            }
            return .literal(.string(text))
        case .integer(let value): return .literal(.integer(value))
        case .float(let value): return .literal(.float(value))
        case .symbol("("):
            if skipSymbol(")") { return .tuple([]) }
            let first = try parseExpression()
            guard isSymbol(",") else {
                try expect(.symbol(")"), "')'")
                return first
            }
            var items = [first]
            while skipSymbol(",") {
                if isSymbol(")") { break }
                items.append(try parseExpression())
            }
            try expect(.symbol(")"), "')'")
            return .tuple(items)
        case .symbol("["):
            var items: [TemplateExpression] = []
            while !isSymbol("]") {
                items.append(try parseExpression())
                guard skipSymbol(",") else { break }
            }
            try expect(.symbol("]"), "']'")
            return .list(items)
        case .symbol("{"):
            var pairs: [(key: TemplateExpression, value: TemplateExpression)] = []
            while !isSymbol("}") {
                let key = try parseExpression()
                try expect(.symbol(":"), "':'")
                pairs.append((key, try parseExpression()))
                guard skipSymbol(",") else { break }
            }
            try expect(.symbol("}"), "'}'")
            return .dictionary(pairs)
        default:
            throw failure("expected an expression, found \(describe(token.kind))", line: token.line)
        }
    }

    private mutating func parsePostfix(_ base: TemplateExpression) throws -> TemplateExpression {
        var expression = base
        while true {
            if skipSymbol(".") {
                let token = advance()
                switch token.kind {
                case .name(let name): expression = .attribute(expression, name)
                case .integer(let position): expression = .item(expression, .literal(.integer(position)))
                default: throw failure("expected an attribute name after '.', found \(describe(token.kind))", line: token.line)
                }
            } else if skipSymbol("[") {
                expression = try parseSubscript(expression)
            } else if isSymbol("(") {
                expression = .call(expression, try parseCallArguments())
            } else {
                return expression
            }
        }
    }

    /// `[key]` or a slice `[start:stop:step]`, any part optional; the `[` is already consumed.
    private mutating func parseSubscript(_ base: TemplateExpression) throws -> TemplateExpression {
        var parts: [TemplateExpression?] = [nil]
        var sawColon = false
        while !isSymbol("]") {
            if skipSymbol(":") {
                sawColon = true
                parts.append(nil)
                guard parts.count <= 3 else { throw failure("a slice takes at most three parts") }
            } else {
                guard parts[parts.count - 1] == nil else { throw failure("expected ':' or ']' in a subscript") }
                parts[parts.count - 1] = try parseExpression()
            }
        }
        try expect(.symbol("]"), "']'")
        if !sawColon {
            guard let key = parts[0] else { throw failure("expected a subscript between '[' and ']'") }
            return .item(base, key)
        }
        return .slice(base, start: parts[0], stop: parts.count > 1 ? parts[1] : nil, step: parts.count > 2 ? parts[2] : nil)
    }

    /// `(positional, name=value)`, starting at the `(`.
    mutating func parseCallArguments() throws -> TemplateArguments {
        try expect(.symbol("("), "'('")
        var arguments = TemplateArguments()
        while !isSymbol(")") {
            if skipSymbol("*") {
                arguments.positionalSplat = try parseExpression()
            } else if skipSymbol("**") {
                arguments.keywordSplat = try parseExpression()
            } else if case .name(let name) = current.kind, index + 1 < tokens.count, tokens[index + 1].kind == .symbol("=") {
                index += 2
                arguments.keywords.append((name, try parseExpression()))
            } else {
                guard arguments.keywords.isEmpty else { throw failure("a positional argument follows a keyword argument") }
                arguments.positional.append(try parseExpression())
            }
            guard skipSymbol(",") else { break }
        }
        try expect(.symbol(")"), "')'")
        return arguments
    }

    private mutating func parseFiltersAndTests(_ base: TemplateExpression) throws -> TemplateExpression {
        var expression = base
        while true {
            if skipSymbol("|") {
                let name = try expectName()
                let arguments = isSymbol("(") ? try parseCallArguments() : TemplateArguments()
                expression = .filter(expression, name: name, arguments)
            } else if skipName("is") {
                let negated = skipName("not")
                let name = try expectName()
                var arguments = TemplateArguments()
                if isSymbol("(") {
                    arguments = try parseCallArguments()
                } else if startsTestArgument {
                    arguments.positional = [try parsePostfix(try parsePrimary())]
                }
                expression = .test(expression, name: name, arguments, negated: negated)
            } else if isSymbol("(") {
                expression = .call(expression, try parseCallArguments())
            } else {
                return expression
            }
        }
    }

    /// Whether `is name` is followed by a bare argument (`is equalto 3`, `is sameas false`).
    private var startsTestArgument: Bool {
        switch current.kind {
        case .name(let name): return !["else", "or", "and", "is", "if", "in", "not"].contains(name)
        case .string, .integer, .float, .symbol("["), .symbol("{"): return true
        default: return false
        }
    }
}
