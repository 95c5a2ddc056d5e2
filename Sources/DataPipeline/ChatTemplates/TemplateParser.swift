/// Turns tokens into statements. Expressions are parsed in `TemplateParser+Expressions.swift`.
///
/// Statements cover what chat templates use: `if/elif/else`, `for … in … [if …]` with `else`,
/// `set` (plain, unpacking, `ns.attribute`, block form), `macro`, `break`, `continue`, and
/// transformers' `{% generation %}` marker, rendered as its body.
struct TemplateParser {
    let tokens: [TemplateToken]
    var index = 0
    /// Guards the stack against absurdly nested input.
    var depth = 0
    static let maximumDepth = 200

    static func parse(_ tokens: [TemplateToken]) throws -> [TemplateNode] {
        var parser = TemplateParser(tokens: tokens)
        let (body, terminator) = try parser.parseBody(until: [])
        if let terminator {
            throw ChatTemplateError(.syntax, "unexpected '\(terminator.name)'", line: terminator.line)
        }
        return body
    }

    var current: TemplateToken { tokens[min(index, tokens.count - 1)] }

    func failure(_ message: String, line: Int? = nil) -> ChatTemplateError {
        ChatTemplateError(.syntax, message, line: line ?? current.line)
    }

    /// The token for messages: `'%}'`, `name 'x'`, `end of template`.
    func describe(_ kind: TemplateToken.Kind) -> String {
        switch kind {
        case .text: return "template text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let name): return "'\(name)'"
        case .string: return "a string"
        case .integer(let value): return "'\(value)'"
        case .float(let value): return "'\(value)'"
        case .symbol(let symbol): return "'\(symbol)'"
        case .end: return "end of template"
        }
    }

    mutating func advance() -> TemplateToken {
        let token = current
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    mutating func expect(_ kind: TemplateToken.Kind, _ what: String) throws {
        guard current.kind == kind else { throw failure("expected \(what), found \(describe(current.kind))") }
        _ = advance()
    }

    mutating func expectName() throws -> String {
        guard case .name(let name) = current.kind else { throw failure("expected a name, found \(describe(current.kind))") }
        _ = advance()
        return name
    }

    func isSymbol(_ symbol: String) -> Bool { current.kind == .symbol(symbol) }
    func isName(_ name: String) -> Bool { current.kind == .name(name) }

    mutating func skipSymbol(_ symbol: String) -> Bool {
        guard isSymbol(symbol) else { return false }
        _ = advance()
        return true
    }

    mutating func skipName(_ name: String) -> Bool {
        guard isName(name) else { return false }
        _ = advance()
        return true
    }

    /// Parses nodes until a `{% name %}` tag whose name is in `terminators`; returns the body and
    /// that tag (its name consumed, the rest of the tag not), or nil at the end of the template.
    /// Tags that only close or continue a block; met elsewhere they are misplaced, not unknown.
    static let closingTags: Set<String> = ["elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endraw",
                                           "endfilter", "endcall"]

    mutating func parseBody(until terminators: Set<String>, opener: (name: String, line: Int)? = nil) throws -> ([TemplateNode], (name: String, line: Int)?) {
        var body: [TemplateNode] = []
        while true {
            let token = advance()
            switch token.kind {
            case .end:
                return (body, nil)
            case .text(let text):
                body.append(.text(text))
            case .variableBegin:
                let expression = try parseExpression()
                try expect(.variableEnd, "'}}'")
                body.append(.output(expression, line: token.line))
            case .blockBegin:
                guard case .name(let keyword) = current.kind else { throw failure("expected a tag name after '{%'") }
                if terminators.contains(keyword) {
                    _ = advance()
                    return (body, (keyword, token.line))
                }
                if Self.closingTags.contains(keyword) {
                    var message = "unexpected '\(keyword)'"
                    if let opener {
                        message += ": expected \(terminators.sorted().map { "'\($0)'" }.joined(separator: " or ")) to close the '\(opener.name)' tag on line \(opener.line)"
                    }
                    throw failure(message, line: token.line)
                }
                _ = advance()
                body.append(contentsOf: try parseStatement(keyword, line: token.line))
            default:
                throw failure("unexpected \(describe(token.kind))", line: token.line)
            }
        }
    }

    /// Parses a body that must end with one of `terminators`, naming the open tag if it does not.
    mutating func parseBlockBody(_ terminators: Set<String>, opener: String, line: Int) throws -> ([TemplateNode], String) {
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maximumDepth else { throw failure("blocks nested deeper than \(Self.maximumDepth)") }
        let (body, terminator) = try parseBody(until: terminators, opener: (opener, line))
        guard let terminator else {
            let expected = terminators.sorted().map { "'\($0)'" }.joined(separator: " or ")
            throw failure("unexpected end of template: expected \(expected) to close the '\(opener)' tag on line \(line)")
        }
        return (body, terminator.name)
    }

    mutating func parseStatement(_ keyword: String, line: Int) throws -> [TemplateNode] {
        switch keyword {
        case "if": return [try parseIf(line: line)]
        case "for": return [.loop(try parseFor(line: line))]
        case "set": return [try parseSet(line: line)]
        case "macro": return [.macroDefinition(try parseMacro(line: line))]
        case "break":
            try expect(.blockEnd, "'%}'")
            return [.breakLoop(line: line)]
        case "continue":
            try expect(.blockEnd, "'%}'")
            return [.continueLoop(line: line)]
        case "generation":
            try expect(.blockEnd, "'%}'")
            let (body, _) = try parseBlockBody(["endgeneration"], opener: "generation", line: line)
            try expect(.blockEnd, "'%}'")
            return body
        case "filter": return [try parseFilterBlock(line: line)]
        case "call": return [try parseCallBlock(line: line)]
        default:
            throw failure("unknown tag '\(keyword)'", line: line)
        }
    }

    private mutating func parseIf(line: Int) throws -> TemplateNode {
        var branches: [(condition: TemplateExpression, body: [TemplateNode])] = []
        var otherwise: [TemplateNode] = []
        var condition = try parseExpression()
        while true {
            try expect(.blockEnd, "'%}'")
            let (body, terminator) = try parseBlockBody(["elif", "else", "endif"], opener: "if", line: line)
            branches.append((condition, body))
            if terminator == "elif" {
                condition = try parseExpression()
                continue
            }
            if terminator == "else" {
                try expect(.blockEnd, "'%}'")
                (otherwise, _) = try parseBlockBody(["endif"], opener: "if", line: line)
            }
            try expect(.blockEnd, "'%}'")
            return .conditional(branches: branches, otherwise: otherwise, line: line)
        }
    }

    private mutating func parseFor(line: Int) throws -> TemplateLoop {
        var targets = [try expectName()]
        while skipSymbol(",") { targets.append(try expectName()) }
        guard skipName("in") else { throw failure("expected 'in' in the 'for' tag, found \(describe(current.kind))") }
        let iterable = try parseExpression(allowConditional: false)
        var filter: TemplateExpression?
        if skipName("if") { filter = try parseExpression() }
        if skipName("recursive") { throw failure("recursive loops are not supported") }
        try expect(.blockEnd, "'%}'")
        var (body, terminator) = try parseBlockBody(["else", "endfor"], opener: "for", line: line)
        var otherwise: [TemplateNode] = []
        if terminator == "else" {
            try expect(.blockEnd, "'%}'")
            (otherwise, terminator) = try parseBlockBody(["endfor"], opener: "for", line: line)
        }
        try expect(.blockEnd, "'%}'")
        return TemplateLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)
    }

    private mutating func parseSet(line: Int) throws -> TemplateNode {
        let first = try expectName()
        if skipSymbol(".") {
            let attribute = try expectName()
            try expect(.symbol("="), "'='")
            let value = try parseExpression()
            try expect(.blockEnd, "'%}'")
            return .assignment(target: .attribute(object: first, attribute: attribute), value: value, line: line)
        }
        var names = [first]
        while skipSymbol(",") { names.append(try expectName()) }
        if names.count == 1 && current.kind == .blockEnd {
            _ = advance()
            let (body, _) = try parseBlockBody(["endset"], opener: "set", line: line)
            try expect(.blockEnd, "'%}'")
            return .blockAssignment(name: first, body: body, line: line)
        }
        try expect(.symbol("="), "'='")
        let value = try parseTupleOrExpression()
        try expect(.blockEnd, "'%}'")
        return .assignment(target: .names(names), value: value, line: line)
    }

    /// `(name, other=default)`, starting at the `(`.
    private mutating func parseParameters() throws -> [(name: String, defaultValue: TemplateExpression?)] {
        try expect(.symbol("("), "'('")
        var parameters: [(name: String, defaultValue: TemplateExpression?)] = []
        while !isSymbol(")") {
            let parameter = try expectName()
            let defaultValue = skipSymbol("=") ? try parseExpression() : nil
            parameters.append((parameter, defaultValue))
            guard skipSymbol(",") else { break }
        }
        try expect(.symbol(")"), "')'")
        return parameters
    }

    private mutating func parseFilterBlock(line: Int) throws -> TemplateNode {
        var filters: [(name: String, arguments: TemplateArguments)] = []
        repeat {
            let name = try expectName()
            filters.append((name, isSymbol("(") ? try parseCallArguments() : TemplateArguments()))
        } while skipSymbol("|")
        try expect(.blockEnd, "'%}'")
        let (body, _) = try parseBlockBody(["endfilter"], opener: "filter", line: line)
        try expect(.blockEnd, "'%}'")
        return .filterBlock(filters: filters, body: body, line: line)
    }

    private mutating func parseCallBlock(line: Int) throws -> TemplateNode {
        let callerParameters = isSymbol("(") ? try parseParameters() : []
        let call = try parseExpression()
        guard case .call = call else { throw failure("expected a macro call in the 'call' tag", line: line) }
        try expect(.blockEnd, "'%}'")
        let (body, _) = try parseBlockBody(["endcall"], opener: "call", line: line)
        try expect(.blockEnd, "'%}'")
        return .callBlock(call: call, callerParameters: callerParameters, body: body, line: line)
    }

    private mutating func parseMacro(line: Int) throws -> TemplateMacro {
        let name = try expectName()
        let parameters = try parseParameters()
        try expect(.blockEnd, "'%}'")
        let (body, _) = try parseBlockBody(["endmacro"], opener: "macro", line: line)
        if case .name = current.kind { _ = advance() }
        try expect(.blockEnd, "'%}'")
        return TemplateMacro(name: name, parameters: parameters, body: body, line: line)
    }
}
