/// Runs parsed statements over variables and returns the rendered text.
///
/// Scoping follows jinja2: `if` shares its surrounding scope; each `for` iteration and each macro
/// call gets a fresh scope, so a `set` inside them is gone afterwards (which is why templates
/// carry state out of loops in a `namespace()`); names resolve innermost first, then the
/// template's variables, then globals (`range`, `namespace`, `raise_exception`, …).
final class TemplateInterpreter {
    /// What a statement list asks of the loop around it.
    enum Flow {
        case normal, breakLoop, continueLoop
    }

    /// Macro calls nest at most this deep, so a recursive macro fails instead of overflowing.
    static let maximumCallDepth = 64

    private var scopes: [[String: TemplateValue]]
    private let globals: [String: TemplateValue]
    private var callDepth = 0

    init(variables: [String: TemplateValue], globals: [String: TemplateValue]) {
        self.scopes = [variables]
        self.globals = globals
    }

    func render(_ nodes: [TemplateNode]) throws -> String {
        var output = ""
        let flow = try execute(nodes, into: &output)
        if flow != .normal { throw ChatTemplateError(.render, "'break' or 'continue' outside a loop") }
        return output
    }

    // MARK: Variables

    func lookup(_ name: String) -> TemplateValue {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        return globals[name] ?? .undefined("'\(name)' is undefined")
    }

    private func assign(_ name: String, _ value: TemplateValue) {
        scopes[scopes.count - 1][name] = value
    }

    /// Runs `body` with a new innermost scope holding `variables`.
    private func withScope<Result>(_ variables: [String: TemplateValue], _ body: () throws -> Result) rethrows -> Result {
        scopes.append(variables)
        defer { scopes.removeLast() }
        return try body()
    }

    // MARK: Statements

    func execute(_ nodes: [TemplateNode], into output: inout String) throws -> Flow {
        for node in nodes {
            let flow = try execute(node, into: &output)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func execute(_ node: TemplateNode, into output: inout String) throws -> Flow {
        switch node {
        case .text(let text):
            output += text
        case .output(let expression, let line):
            output += try located(line) { try evaluate(expression).text }
        case .conditional(let branches, let otherwise, let line):
            for branch in branches where try located(line, { try evaluate(branch.condition).isTruthy }) {
                return try execute(branch.body, into: &output)
            }
            return try execute(otherwise, into: &output)
        case .loop(let loop):
            try runLoop(loop, into: &output)
        case .assignment(let target, let valueExpression, let line):
            try located(line) {
                let value = try evaluate(valueExpression)
                try assign(value, to: target)
            }
        case .blockAssignment(let name, let body, _):
            var captured = ""
            _ = try execute(body, into: &captured)
            assign(name, .string(captured))
        case .macroDefinition(let macro):
            assign(macro.name, .function(makeMacro(macro)))
        case .filterBlock(let filters, let body, let line):
            var captured = ""
            _ = try execute(body, into: &captured)
            var value = TemplateValue.string(captured)
            try located(line) {
                for filter in filters {
                    let (positional, keywords) = try evaluate(filter.arguments)
                    value = try TemplateFilters.apply(filter.name, to: value, positional, keywords, interpreter: self)
                }
            }
            output += value.text
        case .callBlock(let call, let callerParameters, let body, let line):
            output += try located(line) { try runCallBlock(call, callerParameters: callerParameters, body: body).text }
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    /// Runs `body`, giving any error without a line the statement's line.
    private func located<Result>(_ line: Int, _ body: () throws -> Result) throws -> Result {
        do {
            return try body()
        } catch let error as ChatTemplateError {
            throw error.located(at: line)
        }
    }

    private func assign(_ value: TemplateValue, to target: AssignmentTarget) throws {
        switch target {
        case .names(let names) where names.count == 1:
            assign(names[0], value)
        case .names(let names):
            let items = try unpack(value, count: names.count)
            for (name, item) in zip(names, items) { assign(name, item) }
        case .attribute(let objectName, let attribute):
            guard case .namespace(let namespace) = lookup(objectName) else {
                throw ChatTemplateError(.render, "cannot assign attribute on non-namespace object '\(objectName)'")
            }
            namespace.attributes[attribute] = value
        }
    }

    private func unpack(_ value: TemplateValue, count: Int) throws -> [TemplateValue] {
        let items = try value.iterated()
        guard items.count == count else {
            throw ChatTemplateError(.render, items.count > count
                ? "too many values to unpack (expected \(count))"
                : "not enough values to unpack (expected \(count), got \(items.count))")
        }
        return items
    }

    private func bindTargets(_ targets: [String], to item: TemplateValue) throws -> [String: TemplateValue] {
        if targets.count == 1 { return [targets[0]: item] }
        let parts = try unpack(item, count: targets.count)
        return Dictionary(uniqueKeysWithValues: zip(targets, parts))
    }

    private func runLoop(_ loop: TemplateLoop, into output: inout String) throws {
        var items = try located(loop.line) { try evaluate(loop.iterable).iterated() }
        if let filter = loop.filter {
            items = try located(loop.line) {
                try items.filter { item in
                    try withScope(try bindTargets(loop.targets, to: item)) { try evaluate(filter).isTruthy }
                }
            }
        }
        guard !items.isEmpty else {
            _ = try execute(loop.otherwise, into: &output)
            return
        }
        for (position, item) in items.enumerated() {
            var variables = try located(loop.line) { try bindTargets(loop.targets, to: item) }
            variables["loop"] = Self.loopObject(position: position, items: items)
            let flow = try withScope(variables) { try execute(loop.body, into: &output) }
            if flow == .breakLoop { break }
        }
    }

    /// jinja2's `loop` variable for the item at `position`.
    private static func loopObject(position: Int, items: [TemplateValue]) -> TemplateValue {
        var loop = TemplateDictionary()
        let length = items.count
        loop["index"] = .integer(position + 1)
        loop["index0"] = .integer(position)
        loop["revindex"] = .integer(length - position)
        loop["revindex0"] = .integer(length - position - 1)
        loop["first"] = .bool(position == 0)
        loop["last"] = .bool(position == length - 1)
        loop["length"] = .integer(length)
        loop["depth"] = .integer(1)
        loop["depth0"] = .integer(0)
        loop["previtem"] = position > 0 ? items[position - 1] : .undefined("'loop.previtem' is undefined")
        loop["nextitem"] = position + 1 < length ? items[position + 1] : .undefined("'loop.nextitem' is undefined")
        loop["cycle"] = .function(TemplateFunction(name: "cycle") { arguments, _ in
            guard !arguments.isEmpty else { throw ChatTemplateError(.render, "no items for cycling given") }
            return arguments[position % arguments.count]
        })
        return .dictionary(loop)
    }

    /// Calls the block's macro with `caller`, a function rendering the block body in the scope
    /// of the call site (not of the macro).
    private func runCallBlock(_ call: TemplateExpression, callerParameters: [(name: String, defaultValue: TemplateExpression?)],
                              body: [TemplateNode]) throws -> TemplateValue {
        guard case .call(let callee, let arguments) = call else { preconditionFailure("the parser only builds call blocks from calls") }
        let callSiteScopes = scopes
        let caller = TemplateFunction(name: "caller") { [unowned self] positional, keywords in
            let savedScopes = self.scopes
            self.scopes = callSiteScopes + [[:]]
            defer { self.scopes = savedScopes }
            try self.bind(callerParameters, positional, keywords, function: "caller")
            var output = ""
            _ = try self.execute(body, into: &output)
            return .string(output)
        }
        guard case .function(let function) = try evaluate(callee) else {
            throw ChatTemplateError(.render, "the 'call' tag needs a macro")
        }
        var (positional, keywords) = try evaluate(arguments)
        keywords.append(("caller", .function(caller)))
        return try function.call(positional, keywords)
    }

    /// Binds call arguments to parameters in the innermost scope, as a macro call does.
    private func bind(_ parameters: [(name: String, defaultValue: TemplateExpression?)], _ positional: [TemplateValue],
                      _ keywords: [(name: String, value: TemplateValue)], function: String) throws {
        guard positional.count <= parameters.count else {
            throw ChatTemplateError(.render, "macro '\(function)' takes not more than \(parameters.count) argument(s)")
        }
        for (position, parameter) in parameters.enumerated() {
            let value: TemplateValue
            if position < positional.count {
                value = positional[position]
            } else if let keyword = keywords.first(where: { $0.name == parameter.name }) {
                value = keyword.value
            } else if let defaultValue = parameter.defaultValue {
                value = try evaluate(defaultValue)
            } else {
                value = .undefined("'\(parameter.name)' is undefined")
            }
            assign(parameter.name, value)
        }
        for keyword in keywords where keyword.name != "caller" && !parameters.contains(where: { $0.name == keyword.name }) {
            throw ChatTemplateError(.render, "macro '\(function)' takes no keyword argument '\(keyword.name)'")
        }
        if let caller = keywords.first(where: { $0.name == "caller" }) { assign("caller", caller.value) }
    }

    private func makeMacro(_ macro: TemplateMacro) -> TemplateFunction {
        TemplateFunction(name: macro.name) { [unowned self] positional, keywords in
            guard self.callDepth < Self.maximumCallDepth else {
                throw ChatTemplateError(.render, "macro '\(macro.name)' nested deeper than \(Self.maximumCallDepth) calls")
            }
            self.callDepth += 1
            defer { self.callDepth -= 1 }
            // The macro sees the template's top-level variables, not the caller's locals.
            let savedScopes = self.scopes
            self.scopes = [savedScopes[0], [:]]
            defer { self.scopes = savedScopes }
            try self.bind(macro.parameters, positional, keywords, function: macro.name)
            var output = ""
            _ = try self.execute(macro.body, into: &output)
            return .string(output)
        }
    }
}
