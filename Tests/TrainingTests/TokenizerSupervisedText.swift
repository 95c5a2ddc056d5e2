import DataPipeline

extension Tokenizer {
    /// The text of `sample`'s supervised tokens, spans joined by "|" (for the SFT and preference
    /// tokenization tests).
    func supervisedText(_ sample: TokenizedSample) -> String {
        var spans: [String] = [], current: [Int32] = []
        for (id, supervised) in zip(sample.ids, sample.supervised) {
            if supervised { current.append(id) } else if !current.isEmpty { spans.append(decode(current)); current = [] }
        }
        if !current.isEmpty { spans.append(decode(current)) }
        return spans.joined(separator: "|")
    }
}
