import DataPipeline

/// A preference pair as token ids: chosen and rejected each the prompt's tokens, the same on
/// both sides and not supervised, then the completion's tokens, supervised.
public struct TokenizedPair: Sendable, Equatable {
    /// `file:line` of the pair.
    public var source: String
    public var chosen: TokenizedSample
    public var rejected: TokenizedSample
    public var margin: Double?

    public init(source: String, chosen: TokenizedSample, rejected: TokenizedSample, margin: Double? = nil) {
        self.source = source
        self.chosen = chosen
        self.rejected = rejected
        self.margin = margin
    }

    /// The number of prompt tokens, which both sides start with.
    public var promptLength: Int { chosen.promptLength }
}

/// A KTO sample as token ids: prompt not supervised, completion supervised.
public struct TokenizedUnpaired: Sendable, Equatable {
    /// `file:line` of the sample.
    public var source: String
    public var sample: TokenizedSample
    public var desirable: Bool

    public init(source: String, sample: TokenizedSample, desirable: Bool) {
        self.source = source
        self.sample = sample
        self.desirable = desirable
    }
}

extension TokenizedSample {
    /// The tokens before the first supervised one.
    var promptLength: Int { supervised.firstIndex(of: true) ?? ids.count }
}

/// Turns preference pairs and KTO samples into token ids and loss masks through
/// `SFTTokenization`, with only the final completion supervised: earlier assistant turns of a
/// prompt are context (`maskHistory`), and the prompt is never trained on.
public struct PreferenceTokenization {
    public let sft: SFTTokenization

    public init(tokenizer: any Tokenizer, renderer: ChatTemplateRenderer, specialTokens: [String: String] = [:]) {
        sft = SFTTokenization(tokenizer: tokenizer, renderer: renderer, specialTokens: specialTokens,
                              options: .init(trainOnPrompt: false, maskHistory: true))
    }

    /// Chosen and rejected tokenized; their prompts must come out as the same tokens, since the
    /// objectives compare the two completions' log-probabilities after one prompt.
    public func tokenize(_ pair: PreferencePair) throws(DataError) -> TokenizedPair {
        let chosen = try sft.tokenize(SFTSample(source: pair.source, content: pair.chosen))
        let rejected = try sft.tokenize(SFTSample(source: pair.source, content: pair.rejected))
        let prompts = (chosen.ids[..<chosen.promptLength], rejected.ids[..<rejected.promptLength])
        guard prompts.0 == prompts.1 else {
            let same = zip(prompts.0, prompts.1).prefix { $0 == $1 }.count
            throw DataError("\(pair.source): the prompt comes out as different tokens before the chosen answer than before the rejected one (\(prompts.0.count) and \(prompts.1.count) tokens, first differing at token \(same)); the chat template and tokenizer must give one prompt the same tokens whatever the answer")
        }
        return TokenizedPair(source: pair.source, chosen: chosen, rejected: rejected, margin: pair.margin)
    }

    public func tokenize(_ sample: UnpairedSample) throws(DataError) -> TokenizedUnpaired {
        TokenizedUnpaired(source: sample.source, sample: try sft.tokenize(SFTSample(source: sample.source, content: sample.content)),
                          desirable: sample.desirable)
    }
}
