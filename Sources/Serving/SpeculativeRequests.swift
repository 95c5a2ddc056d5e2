import DataPipeline
import Tensors

/// How a speculative generation went: what `meshlm generate --draft-checkpoint` reports.
public struct SpeculativeSummary: Sendable {
    public var finishReason: FinishReason
    public var generatedCount: Int
    public var proposedCount: Int
    public var acceptedCount: Int
    public var targetForwardCount: Int

    public var acceptanceRate: Double { proposedCount == 0 ? 0 : Double(acceptedCount) / Double(proposedCount) }
    public var tokensPerTargetForward: Double { targetForwardCount == 0 ? 0 : Double(generatedCount) / Double(targetForwardCount) }
}

/// Requests with stop rules and text on top of the greedy token loop: the same rules and the
/// same text as `Engine` gives for one sequence (both go through `GenerationSequence`).
extension SpeculativeDecoder {
    /// Refuses a draft that cannot propose the target's tokens: a different vocabulary size or a
    /// different tokenizer (same size, other ids) would make every proposal meaningless.
    /// `targetSource` and `draftSource` name the checkpoints in the messages.
    public static func checkDraft(target: InferenceWeights, targetTokenizer: TokenizerIdentity, targetSource: String,
                                  draft: InferenceWeights, draftTokenizer: TokenizerIdentity, draftSource: String) throws(ServingError) {
        guard target.config.vocabSize == draft.config.vocabSize else {
            throw ServingError(.checkpoint, "the draft \(draftSource) has vocab_size \(draft.config.vocabSize) but the target \(targetSource) has \(target.config.vocabSize): a draft must share the target's vocabulary (train it with the target's tokenizer)")
        }
        guard targetTokenizer.hash == draftTokenizer.hash else {
            throw ServingError(.checkpoint, "the draft \(draftSource) uses tokenizer '\(draftTokenizer.name)' (\(draftTokenizer.hash)) but the target \(targetSource) uses '\(targetTokenizer.name)' (\(targetTokenizer.hash)): a draft must share the target's tokenizer (train it with the target's tokenizer.json)")
        }
    }

    /// Refuses what speculative decoding cannot reproduce exactly: penalties make each row's
    /// distribution depend on the proposals before it (not implemented), and log-probabilities
    /// are not computed. Rather than silently changing the output these are errors.
    public func validate(prompt: [Int32], parameters: SamplingParameters) throws(ServingError) {
        try parameters.validate()
        for (name, value, neutral) in [("repetition_penalty", parameters.repetitionPenalty, Float(1)),
                                       ("presence_penalty", parameters.presencePenalty, 0),
                                       ("frequency_penalty", parameters.frequencyPenalty, 0)] where value != neutral {
            throw ServingError(.invalidRequest, "speculative decoding does not apply penalties: \(name) \(value) was asked with a draft model; leave it at \(neutral) or drop the draft (--draft-checkpoint)", parameter: name)
        }
        if parameters.logprobs != nil {
            throw ServingError(.invalidRequest, "speculative decoding does not report log-probabilities; drop logprobs or the draft", parameter: "logprobs")
        }
        if parameters.sampleCount != 1 {
            throw ServingError(.invalidRequest, "speculative decoding generates one sample per request: n \(parameters.sampleCount) was asked with a draft model; ask for n 1 (send the request n times with different seeds) or drop the draft", parameter: "n")
        }
        guard !prompt.isEmpty else { throw ServingError(.invalidRequest, "the prompt is empty", parameter: "prompt") }
        let vocabulary = target.config.vocabSize
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw ServingError(.invalidRequest, "prompt token id \(bad) is outside the model's vocabulary of \(vocabulary)", parameter: "prompt")
        }
        let total = prompt.count + parameters.maxTokens
        guard total <= context else {
            throw ServingError(.promptTooLong, "the target and draft hold \(context) tokens together (the smaller max_position_embeddings); the prompt has \(prompt.count) tokens and max_tokens is \(parameters.maxTokens) (\(total) in all): shorten the prompt or lower max_tokens", parameter: "max_tokens")
        }
    }

    /// Generation with the request's stop tokens, end-of-sequence, stop strings and max_tokens;
    /// `onOutput` receives each token with the text that is safe to show, as the engine's `step`
    /// would. Temperature 0: greedy, the target's own tokens. Above 0: speculative sampling,
    /// the target's own distribution (the same seed gives the same text in this mode, but not
    /// the text the engine gives for that seed). A decoder serves one request at a time, one after another (each
    /// starts again at position 0 of both caches); the summary describes this request alone.
    @discardableResult
    public func generate(prompt: [Int32], parameters: SamplingParameters, tokenizer: (any Tokenizer)?,
                         onOutput: (SequenceOutput) -> Void) throws(ServingError) -> SpeculativeSummary {
        try validate(prompt: prompt, parameters: parameters)
        let endOfSequence = tokenizer.map(\.eosId) ?? target.config.eosTokenId.map(Int32.init)
        let sequence = GenerationSequence(requestID: 0, prompt: prompt, parameters: parameters, requestSeed: 0)
        let before = (proposedCount, acceptedCount, targetForwardCount)
        let onRun = { (run: [Int32]) -> Bool in
            for token in run {
                // Speculative sampling's tokens come from p via accept/reject: no per-token
                // probabilities are computed (validate refuses logprobs).
                let sampled = SampledToken(token: token, logprob: 0, samplingLogprob: 0)
                let text = sequence.append(sampled, tokenizer: tokenizer, endOfSequence: endOfSequence)
                onOutput(SequenceOutput(requestID: 0, token: sampled, text: text, finishReason: sequence.finishReason,
                                        promptTokenCount: prompt.count, outputTokenCount: sequence.outputCount))
                if sequence.finishReason != nil { return false }
            }
            return true
        }
        if parameters.maxTokens > 0 {
            if parameters.temperature == 0 {
                decode(prompt: prompt, maxTokens: parameters.maxTokens, onTokens: onRun)
            } else {
                var generator = SplitMix64(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
                decodeSampled(prompt: prompt, maxTokens: parameters.maxTokens, parameters: parameters, generator: &generator,
                              onTokens: onRun)
            }
        }
        let finish = sequence.finishReason ?? .length
        if parameters.maxTokens == 0 {
            onOutput(SequenceOutput(requestID: 0, token: nil, text: "", finishReason: finish,
                                    promptTokenCount: prompt.count, outputTokenCount: 0))
        }
        return SpeculativeSummary(finishReason: finish, generatedCount: sequence.outputCount,
                                  proposedCount: proposedCount - before.0, acceptedCount: acceptedCount - before.1,
                                  targetForwardCount: targetForwardCount - before.2)
    }
}
