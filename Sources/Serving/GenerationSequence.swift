import DataPipeline
import Tensors

/// Why a sequence ended (OpenAI's `finish_reason`, plus `cancelled` for a dropped client).
public enum FinishReason: String, Sendable {
    case stop, length, cancelled
}

/// What one engine step produced for one sequence: one sample of a request.
public struct SequenceOutput: Sendable {
    /// The request's id (`Engine.add` returned it); the n samples of a request share it.
    public var requestID: Int
    /// Which of the request's samples this is, 0..<n (OpenAI's choice `index`).
    public var sampleIndex: Int
    /// The new token; nil for an output that only reports the end (max_tokens 0, cancellation).
    public var token: SampledToken?
    /// New text that is safe to show (held back while it might still become a stop string).
    public var text: String
    public var finishReason: FinishReason?
    public var promptTokenCount: Int
    /// This sample's tokens generated so far.
    public var outputTokenCount: Int

    public init(requestID: Int, sampleIndex: Int = 0, token: SampledToken?, text: String, finishReason: FinishReason?,
                promptTokenCount: Int, outputTokenCount: Int) {
        self.requestID = requestID
        self.sampleIndex = sampleIndex
        self.token = token
        self.text = text
        self.finishReason = finishReason
        self.promptTokenCount = promptTokenCount
        self.outputTokenCount = outputTokenCount
    }
}

/// One sample of a request inside the engine: its tokens, the KV blocks that hold them, its
/// sampler state. A request for n samples starts as one sequence (sample 0, the leader), which
/// prefills the prompt; the engine forks the other n − 1 from it when its first token is drawn.
final class GenerationSequence {
    let requestID: Int
    let sampleIndex: Int
    let promptCount: Int
    /// The request's seed; sample i's stream is `SamplingParameters.sampleSeed(requestSeed:index:)`.
    let requestSeed: UInt64
    /// Samples still to fork from this one (the leader, until its prompt is prefilled): n − 1,
    /// then 0.
    var unforkedSampleCount: Int
    let parameters: SamplingParameters
    /// The index of the served LoRA adapter it generates with (`Engine.adapters`), nil for the base.
    let adapter: Int?
    /// Prompt then output ids.
    var tokens: [Int32]
    /// Tokens whose keys and values are in the cache (a prefix of `tokens`).
    var computedCount = 0
    var blockTable: [Int] = []
    /// Chained hashes of the full blocks in `blockTable` that are registered or shared.
    var blockHashes: [UInt64] = []
    var generator: SplitMix64
    var seen: Set<Int32>
    var outputCounts: [Int32: Int] = [:]
    /// Unicode scalars of the output text already handed out.
    var emittedScalarCount = 0
    var finishReason: FinishReason?

    /// - Parameters:
    ///   - requestSeed: the request's seed; this sample draws from the stream of its own seed.
    init(requestID: Int, sampleIndex: Int = 0, prompt: [Int32], parameters: SamplingParameters, requestSeed: UInt64,
         adapter: Int? = nil) {
        self.requestID = requestID
        self.adapter = adapter
        self.sampleIndex = sampleIndex
        self.promptCount = prompt.count
        self.parameters = parameters
        self.requestSeed = requestSeed
        self.unforkedSampleCount = sampleIndex == 0 ? parameters.sampleCount - 1 : 0
        self.tokens = prompt
        self.generator = SplitMix64(seed: SamplingParameters.sampleSeed(requestSeed: requestSeed, index: sampleIndex))
        self.seen = Set(prompt)
    }

    /// Sample `index` of this sequence's request, with only the prompt (no blocks yet).
    func sibling(sampleIndex index: Int) -> GenerationSequence {
        GenerationSequence(requestID: requestID, sampleIndex: index, prompt: Array(tokens[..<promptCount]),
                           parameters: parameters, requestSeed: requestSeed, adapter: adapter)
    }

    var outputCount: Int { tokens.count - promptCount }
    var outputTokens: ArraySlice<Int32> { tokens[promptCount...] }

    /// Appends a sampled token and returns the text to emit and whether a rule ended the sequence.
    func append(_ sampled: SampledToken, tokenizer: (any Tokenizer)?, endOfSequence: Int32?) -> String {
        let token = sampled.token
        let stopsOnToken = parameters.stopTokens.contains(token) || (!parameters.ignoreEOS && token == endOfSequence)
        if stopsOnToken {
            // The stop token counts as generated but is not part of the text (OpenAI, vLLM).
            tokens.append(token)
            finishReason = .stop
            return flushText(tokenizer: tokenizer, dropLast: true)
        }
        tokens.append(token)
        seen.insert(token)
        outputCounts[token, default: 0] += 1
        if outputCount >= parameters.maxTokens { finishReason = .length }
        return nextText(tokenizer: tokenizer)
    }

    /// The text after what was emitted, cut at a stop string, holding back an unfinished
    /// UTF-8 character and any tail that could still grow into a stop string.
    private func nextText(tokenizer: (any Tokenizer)?) -> String {
        guard let tokenizer else { return "" }
        let full = Array(tokenizer.decode(Array(outputTokens)).unicodeScalars)
        if !parameters.stopStrings.isEmpty {
            let text = String(String.UnicodeScalarView(full))
            var earliest: String.Index?
            for stop in parameters.stopStrings {
                if let range = text.range(of: stop), earliest.map({ range.lowerBound < $0 }) ?? true {
                    earliest = range.lowerBound
                }
            }
            if let earliest {
                finishReason = .stop
                let kept = Array(text[..<earliest].unicodeScalars)
                return emit(kept, upTo: kept.count)
            }
        }
        if finishReason != nil { return emit(full, upTo: full.count) }
        var end = full.count
        while end > emittedScalarCount && full[end - 1] == "\u{FFFD}" { end -= 1 }
        if let longest = parameters.stopStrings.map({ $0.unicodeScalars.count }).max() {
            end = Swift.max(emittedScalarCount, Swift.min(end, full.count - (longest - 1)))
        }
        return emit(full, upTo: end)
    }

    func flushText(tokenizer: (any Tokenizer)?, dropLast: Bool = false) -> String {
        guard let tokenizer else { return "" }
        let ids = dropLast ? Array(outputTokens.dropLast()) : Array(outputTokens)
        let full = Array(tokenizer.decode(ids).unicodeScalars)
        return emit(full, upTo: full.count)
    }

    private func emit(_ scalars: [Unicode.Scalar], upTo end: Int) -> String {
        guard end > emittedScalarCount else { return "" }
        let text = String(String.UnicodeScalarView(scalars[emittedScalarCount..<end]))
        emittedScalarCount = end
        return text
    }
}
