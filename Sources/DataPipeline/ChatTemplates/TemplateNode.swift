/// A parsed template statement: what the interpreter walks.
indirect enum TemplateNode: Sendable {
    case text(String)
    case output(TemplateExpression, line: Int)
    case conditional(branches: [(condition: TemplateExpression, body: [TemplateNode])], otherwise: [TemplateNode], line: Int)
    case loop(TemplateLoop)
    case assignment(target: AssignmentTarget, value: TemplateExpression, line: Int)
    /// `{% set name %}…{% endset %}`: the rendered body becomes a string.
    case blockAssignment(name: String, body: [TemplateNode], line: Int)
    case macroDefinition(TemplateMacro)
    /// `{% filter f(args) | g %}…{% endfilter %}`: the rendered body passed through the filters.
    case filterBlock(filters: [(name: String, arguments: TemplateArguments)], body: [TemplateNode], line: Int)
    /// `{% call(parameters) macro(args) %}…{% endcall %}`: calls the macro with a `caller`
    /// that renders the body.
    case callBlock(call: TemplateExpression, callerParameters: [(name: String, defaultValue: TemplateExpression?)],
                   body: [TemplateNode], line: Int)
    /// `{% break %}` and `{% continue %}` (jinja2's loopcontrols extension).
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}

/// What `{% set … = … %}` writes to.
enum AssignmentTarget: Sendable {
    /// One name, or several unpacked from a sequence (`set a, b = pair`).
    case names([String])
    /// `set ns.attribute = …`, allowed only on a `namespace()`.
    case attribute(object: String, attribute: String)
}

/// `{% for targets in iterable if filter %}body{% else %}otherwise{% endfor %}`.
struct TemplateLoop: Sendable {
    var targets: [String]
    var iterable: TemplateExpression
    var filter: TemplateExpression?
    var body: [TemplateNode]
    var otherwise: [TemplateNode]
    var line: Int
}

/// `{% macro name(parameter, other=default) %}body{% endmacro %}`.
struct TemplateMacro: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: TemplateExpression?)]
    var body: [TemplateNode]
    var line: Int
}

/// A parsed expression.
indirect enum TemplateExpression: Sendable {
    case literal(TemplateLiteral)
    case name(String)
    case list([TemplateExpression])
    case tuple([TemplateExpression])
    case dictionary([(key: TemplateExpression, value: TemplateExpression)])
    /// `value.name`: an attribute first, then an item, as jinja2's `getattr` does.
    case attribute(TemplateExpression, String)
    /// `value[key]`: an item first, then an attribute.
    case item(TemplateExpression, TemplateExpression)
    case slice(TemplateExpression, start: TemplateExpression?, stop: TemplateExpression?, step: TemplateExpression?)
    case call(TemplateExpression, TemplateArguments)
    case filter(TemplateExpression, name: String, TemplateArguments)
    case test(TemplateExpression, name: String, TemplateArguments, negated: Bool)
    case not(TemplateExpression)
    case negate(TemplateExpression)
    case plus(TemplateExpression)
    case binary(BinaryOperator, TemplateExpression, TemplateExpression)
    /// `a < b <= c`: each comparison against the previous operand, all must hold.
    case comparison(TemplateExpression, [(ComparisonOperator, TemplateExpression)])
    case and(TemplateExpression, TemplateExpression)
    case or(TemplateExpression, TemplateExpression)
    /// `then if condition else otherwise`; a missing `else` yields undefined.
    case conditional(condition: TemplateExpression, then: TemplateExpression, otherwise: TemplateExpression?)
}

/// Positional and keyword arguments of a call, filter or test.
struct TemplateArguments: Sendable {
    var positional: [TemplateExpression] = []
    var keywords: [(name: String, value: TemplateExpression)] = []
    /// `*sequence`: more positional arguments.
    var positionalSplat: TemplateExpression?
    /// `**mapping`: more keyword arguments.
    var keywordSplat: TemplateExpression?
}

enum BinaryOperator: String, Sendable {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//", modulo = "%", power = "**"
    case concatenate = "~"
}

enum ComparisonOperator: String, Sendable {
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case contains = "in", notContains = "not in"
}

/// A constant written in the template.
enum TemplateLiteral: Sendable {
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)

    var value: TemplateValue {
        switch self {
        case .none: return .none
        case .bool(let flag): return .bool(flag)
        case .integer(let integer): return .integer(integer)
        case .float(let number): return .float(number)
        case .string(let text): return .string(text)
        }
    }
}
