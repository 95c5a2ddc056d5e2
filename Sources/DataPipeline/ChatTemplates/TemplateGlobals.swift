import Foundation

/// The global functions transformers' jinja environment offers, plus jinja2's own.
enum TemplateGlobals {
    /// jinja2's sandbox refuses ranges longer than this.
    static let maximumRange = 100_000

    static func make(now: Date) -> [String: TemplateValue] {
        [
            "raise_exception": .function(TemplateFunction(name: "raise_exception") { arguments, _ in
                throw ChatTemplateError(.raised, arguments.first?.text ?? "")
            }),
            "strftime_now": .function(TemplateFunction(name: "strftime_now") { arguments, _ in
                .string(PythonTimeFormat.format(now, arguments.first?.text ?? ""))
            }),
            "range": .function(TemplateFunction(name: "range", call: range)),
            "namespace": .function(TemplateFunction(name: "namespace") { arguments, keywords in
                let namespace = TemplateNamespace()
                if case .dictionary(let initial)? = arguments.first { namespace.attributes = initial }
                for keyword in keywords { namespace.attributes[keyword.name] = keyword.value }
                return .namespace(namespace)
            }),
            "dict": .function(TemplateFunction(name: "dict") { arguments, keywords in
                var dictionary = TemplateDictionary()
                if case .dictionary(let initial)? = arguments.first { dictionary = initial }
                for keyword in keywords { dictionary[keyword.name] = keyword.value }
                return .dictionary(dictionary)
            }),
        ]
    }

    private static func range(_ arguments: [TemplateValue], _ keywords: [(name: String, value: TemplateValue)]) throws -> TemplateValue {
        let bounds = arguments.map(\.integer)
        guard !bounds.isEmpty, bounds.count <= 3, bounds.allSatisfy({ $0 != nil }) else {
            throw ChatTemplateError(.render, "range() takes one to three integer arguments")
        }
        let values = bounds.compactMap { $0 }
        let start = values.count > 1 ? values[0] : 0
        let stop = values.count > 1 ? values[1] : values[0]
        let step = values.count > 2 ? values[2] : 1
        guard step != 0 else { throw ChatTemplateError(.render, "range() arg 3 must not be zero") }
        let count = max(0, ((Double(stop) - Double(start)) / Double(step)).rounded(.up))
        guard count <= Double(maximumRange) else {
            throw ChatTemplateError(.render, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (\(maximumRange)).")
        }
        return .list(stride(from: start, to: stop, by: step).map { .integer($0) })
    }
}
