import Tensors

/// How one request picks its tokens and when it stops (OpenAI's and vLLM's request fields).
public struct SamplingParameters: Sendable, Equatable {
    /// Tokens to generate at most; the sequence ends with `length` there.
    public var maxTokens: Int = 16
    /// 0 means greedy (argmax); otherwise logits are divided by it before softmax.
    public var temperature: Float = 1
    /// Keep only the k most likely tokens (0 = all).
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 = all).
    public var topP: Float = 1
    /// Drop tokens less likely than minP × the most likely one's probability (0 = none).
    public var minP: Float = 0
    /// transformers' rule on every token seen (prompt and output): positive logits divided by
    /// it, negative ones multiplied (1 = off).
    public var repetitionPenalty: Float = 1
    /// OpenAI's rule on output tokens: logit −= presence · [count > 0] + frequency · count.
    public var presencePenalty: Float = 0
    public var frequencyPenalty: Float = 0
    /// Generation ends when the output text contains one; the text is cut before it.
    public var stopStrings: [String] = []
    /// Generation ends on one of these ids (in addition to the tokenizer's EOS unless `ignoreEOS`).
    public var stopTokens: [Int32] = []
    public var ignoreEOS = false
    /// Same seed, same prompt, same parameters ⇒ the same tokens. nil: drawn from the engine.
    public var seed: UInt64?
    /// Return the log-probability of each chosen token and of the n most likely (nil = none).
    /// The chosen token's log-probability under the sampling distribution
    /// (`SampledToken.samplingLogprob`) is reported either way: it costs nothing extra.
    public var logprobs: Int?
    /// Samples generated for the prompt (OpenAI's `n`). The prompt is prefilled once and its
    /// full KV blocks are shared by all samples; sample i draws from its own random stream,
    /// seeded with `sampleSeed(requestSeed:index:)`.
    public var sampleCount: Int = 1

    /// The largest `sampleCount` a request may ask for (a GRPO group is typically 4–64).
    public static let maximumSampleCount = 64

    public init(maxTokens: Int = 16, temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, presencePenalty: Float = 0, frequencyPenalty: Float = 0,
                stopStrings: [String] = [], stopTokens: [Int32] = [], ignoreEOS: Bool = false,
                seed: UInt64? = nil, logprobs: Int? = nil, sampleCount: Int = 1) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.stopStrings = stopStrings
        self.stopTokens = stopTokens
        self.ignoreEOS = ignoreEOS
        self.seed = seed
        self.logprobs = logprobs
        self.sampleCount = sampleCount
    }

    /// The seed of sample `index` of a request seeded with `requestSeed`: the request seed itself
    /// for sample 0 (so n = 1 is unchanged), a SplitMix64 mix of both for the others. A
    /// separate n = 1 request with this seed gives exactly sample `index`'s tokens.
    public static func sampleSeed(requestSeed: UInt64, index: Int) -> UInt64 {
        guard index > 0 else { return requestSeed }
        var mixer = SplitMix64(seed: requestSeed, stream: UInt64(index))
        return mixer.next()
    }

    /// Greedy decoding of `maxTokens` tokens.
    public static func greedy(maxTokens: Int) -> SamplingParameters {
        SamplingParameters(maxTokens: maxTokens, temperature: 0)
    }

    /// Checks every field's range; the error names the OpenAI field.
    public func validate() throws(ServingError) {
        func fail(_ field: String, _ message: String) -> ServingError {
            ServingError(.invalidRequest, "\(field) \(message)", parameter: field)
        }
        if maxTokens < 0 { throw fail("max_tokens", "must be at least 0, got \(maxTokens)") }
        if !(temperature >= 0) { throw fail("temperature", "must be at least 0, got \(temperature)") }
        if topK < 0 { throw fail("top_k", "must be at least 0 (0 = off), got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw fail("top_p", "must be in (0, 1], got \(topP)") }
        if !(minP >= 0 && minP <= 1) { throw fail("min_p", "must be in [0, 1], got \(minP)") }
        if !(repetitionPenalty > 0) { throw fail("repetition_penalty", "must be positive, got \(repetitionPenalty)") }
        if !(presencePenalty >= -2 && presencePenalty <= 2) { throw fail("presence_penalty", "must be in [-2, 2], got \(presencePenalty)") }
        if !(frequencyPenalty >= -2 && frequencyPenalty <= 2) { throw fail("frequency_penalty", "must be in [-2, 2], got \(frequencyPenalty)") }
        if let logprobs, !(0...20).contains(logprobs) { throw fail("logprobs", "must be in [0, 20], got \(logprobs)") }
        if stopStrings.contains("") { throw fail("stop", "must not contain an empty string") }
        if !(1...Self.maximumSampleCount).contains(sampleCount) {
            throw fail("n", "must be in [1, \(Self.maximumSampleCount)], got \(sampleCount)")
        }
    }
}
