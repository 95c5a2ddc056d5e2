/// One finished sample of a request, with what a trainer needs per generated token: the ids and
/// both log-probabilities (`SampledToken`), in generation order.
public struct CompletedSample: Sendable {
    public var requestID: Int
    /// 0..<n within the request.
    public var sampleIndex: Int
    public var promptTokenCount: Int
    /// Generated ids (a stop token that ended the sample included, as it counts as generated).
    public var tokens: [Int32] = []
    /// Each token's raw log-probability (log-softmax of the raw logits); zeros unless the
    /// request set `SamplingParameters.logprobs`.
    public var logprobs: [Float] = []
    /// Each token's log-probability under the distribution it was drawn from (after penalties,
    /// temperature, top-k, top-p, min-p; 0 for greedy): PPO/GRPO's behaviour log-probabilities.
    public var samplingLogprobs: [Float] = []
    /// The text handed out (stop strings cut), when the engine has a tokenizer.
    public var text = ""
    public var finishReason: FinishReason = .length

    public init(requestID: Int, sampleIndex: Int, promptTokenCount: Int) {
        self.requestID = requestID
        self.sampleIndex = sampleIndex
        self.promptTokenCount = promptTokenCount
    }

    /// Adds one step's output of this sample.
    mutating func record(_ output: SequenceOutput) {
        if let token = output.token {
            tokens.append(token.token)
            logprobs.append(token.logprob)
            samplingLogprobs.append(token.samplingLogprob)
        }
        text += output.text
        if let reason = output.finishReason { finishReason = reason }
    }
}

extension Engine {
    /// Runs steps until every queued request is done and returns each request's samples, in
    /// sample order (a rollout for a trainer: queue the prompts with `add`, then call this).
    public func runSamplesToCompletion() -> [Int: [CompletedSample]] {
        var samples: [Int: [Int: CompletedSample]] = [:]
        while hasWork {
            for output in step() {
                samples[output.requestID, default: [:]][output.sampleIndex, default: CompletedSample(
                    requestID: output.requestID, sampleIndex: output.sampleIndex, promptTokenCount: output.promptTokenCount)]
                    .record(output)
            }
        }
        return samples.mapValues { bySample in bySample.keys.sorted().compactMap { bySample[$0] } }
    }
}
