/// What a cleaning operator sees of a record: its text (which mappers rewrite) and its `url`
/// field, when the record has one (the URL blocklist reads it).
public struct CleaningDocument: Sendable, Equatable {
    public var text: String
    public var url: String?

    public init(text: String, url: String? = nil) {
        self.text = text
        self.url = url
    }
}

/// An operator's decision about one document.
public enum OperatorOutcome: Sendable, Equatable {
    case keep
    /// Drop the document; the detail names the rule that failed and the measured value
    /// (`word_count 12 < min_words 50`), for `removed.jsonl` and the stats report.
    case drop(String)
}

/// What an operator did to one document besides keeping or dropping it, summed into the stats
/// report: characters rewritten and, for the PII scrubber, replacements by placeholder.
public struct OperatorEffect: Sendable, Equatable {
    /// |characters before − characters after| plus characters replaced in place: a measure of
    /// how much of the text the operator touched (0 when it left the text alone).
    public var charactersChanged = 0
    /// Replacements by kind (`email`, `ip_address`, `phone`, `card`, `line`…).
    public var replacements: [String: Int] = [:]

    public init() {}
}

/// One step of a cleaning recipe. Mappers rewrite `document.text`; filters return `.drop`;
/// some (C4) do both. Every operator is pure: the same text and config give the same result on
/// any rank, which is what makes `meshlm data clean` rank-count independent.
public protocol CleaningOperator: Sendable {
    /// The operator's name in a recipe and in `removed.jsonl` (`gopher_quality`).
    var name: String { get }
    func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome
}

extension CleaningOperator {
    /// Applies the operator without collecting its effect (tests, one-off use).
    public func apply(to document: inout CleaningDocument) -> OperatorOutcome {
        var effect = OperatorEffect()
        return apply(to: &document, effect: &effect)
    }
}
