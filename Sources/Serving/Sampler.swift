import Foundation
import Tensors

/// One chosen token with two log-probabilities and, when asked, the most likely alternatives.
///
/// - `logprob` is the model's: log-softmax of the raw logits, before penalties, temperature and
///   the top-k/top-p/min-p filters (what OpenAI's `logprobs` report). Computed only when the
///   request asks for log-probabilities (`SamplingParameters.logprobs` not nil; 0 otherwise):
///   it costs one more pass of `exp` over the vocabulary per token.
/// - `samplingLogprob` is the log-probability of the token under the distribution it was drawn
///   from: after penalties, temperature, top-k, top-p and min-p, renormalized over the kept
///   tokens. That is the behaviour policy's probability PPO/GRPO importance ratios divide by.
///   Greedy decoding (temperature 0) is a point mass: 0. Always reported by the engine (the draw
///   computes it); speculative decoding, whose tokens come from accept/reject, reports 0.
public struct SampledToken: Sendable, Equatable {
    public var token: Int32
    public var logprob: Float
    public var samplingLogprob: Float
    /// The n most likely tokens and their raw log-probabilities, most likely first.
    public var topLogprobs: [(token: Int32, logprob: Float)]

    public init(token: Int32, logprob: Float, samplingLogprob: Float, topLogprobs: [(token: Int32, logprob: Float)] = []) {
        self.token = token
        self.logprob = logprob
        self.samplingLogprob = samplingLogprob
        self.topLogprobs = topLogprobs
    }

    public static func == (a: SampledToken, b: SampledToken) -> Bool {
        a.token == b.token && a.logprob == b.logprob && a.samplingLogprob == b.samplingLogprob
            && a.topLogprobs.elementsEqual(b.topLogprobs) { $0 == $1 }
    }
}

/// Picks the next token from one row of logits (vLLM's order): penalties, then greedy or
/// temperature, top-k, top-p, min-p, and a draw from the remaining distribution.
public enum Sampler {
    /// - Parameters:
    ///   - logits: [vocab], modified in place (penalties).
    ///   - seen: every token of the sequence so far (prompt and output), for the repetition penalty.
    ///   - outputCounts: how often each output token occurred, for presence/frequency penalties.
    public static func sample(logits: UnsafeMutableBufferPointer<Float>, parameters: SamplingParameters,
                              seen: Set<Int32>, outputCounts: [Int32: Int],
                              generator: inout SplitMix64) -> SampledToken {
        let vocabulary = logits.count
        let reportsRaw = parameters.logprobs != nil
        let logSumExp = reportsRaw ? Self.logSumExp(UnsafeBufferPointer(logits)) : 0
        var topLogprobs: [(token: Int32, logprob: Float)] = []
        if let count = parameters.logprobs, count > 0 {
            topLogprobs = topIndices(UnsafeBufferPointer(logits), count: count).map { ($0, logits[Int($0)] - logSumExp) }
        }
        // The raw logits the penalties are about to change, so the chosen token's raw
        // log-probability survives them (cheaper than copying the row).
        var rawBeforePenalty: [Int32: Float] = [:]
        func penalize(_ token: Int32, _ change: (Float) -> Float) {
            if reportsRaw && rawBeforePenalty[token] == nil { rawBeforePenalty[token] = logits[Int(token)] }
            logits[Int(token)] = change(logits[Int(token)])
        }
        if parameters.repetitionPenalty != 1 {
            let penalty = parameters.repetitionPenalty
            for token in seen where Int(token) < vocabulary {
                penalize(token) { $0 > 0 ? $0 / penalty : $0 * penalty }
            }
        }
        if parameters.presencePenalty != 0 || parameters.frequencyPenalty != 0 {
            for (token, count) in outputCounts where Int(token) < vocabulary {
                penalize(token) { $0 - (parameters.presencePenalty + parameters.frequencyPenalty * Float(count)) }
            }
        }

        let chosen: Int, samplingLogprob: Float
        if parameters.temperature == 0 {
            (chosen, samplingLogprob) = (argmax(UnsafeBufferPointer(logits)), 0)
        } else {
            (chosen, samplingLogprob) = draw(logits: logits, parameters: parameters, generator: &generator)
        }
        let raw = rawBeforePenalty[Int32(chosen)] ?? logits[chosen]
        return SampledToken(token: Int32(chosen), logprob: reportsRaw ? raw - logSumExp : 0,
                            samplingLogprob: samplingLogprob, topLogprobs: topLogprobs)
    }

    /// The first index of the largest value.
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for index in 1..<values.count where values[index] > values[best] { best = index }
        return best
    }

    /// Temperature, top-k, top-p and min-p, then one uniform draw over what remains; returns the
    /// token and its log-probability under that renormalized distribution.
    static func draw(logits: UnsafeMutableBufferPointer<Float>, parameters: SamplingParameters,
                     generator: inout SplitMix64) -> (token: Int, logprob: Float) {
        let (probabilities, candidates) = filter(logits: UnsafeBufferPointer(logits), parameters: parameters)
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        var target = generator.nextUniform() * mass
        var chosen = candidates.last ?? argmax(UnsafeBufferPointer(logits))
        for index in candidates {
            target -= probabilities[index]
            if target < 0 {
                chosen = index
                break
            }
        }
        return (chosen, logf(probabilities[chosen]) - logf(mass))
    }

    /// The distribution `draw` samples from, normalized: [vocab], zero outside the kept tokens
    /// (speculative sampling compares the target's and the draft's).
    public static func distribution(logits: UnsafeBufferPointer<Float>, parameters: SamplingParameters) -> [Float] {
        let (probabilities, candidates) = filter(logits: logits, parameters: parameters)
        let mass = candidates.reduce(Float(0)) { $0 + probabilities[$1] }
        var normalized = [Float](repeating: 0, count: logits.count)
        for index in candidates { normalized[index] = probabilities[index] / mass }
        return normalized
    }

    /// Unnormalized probabilities at the temperature and the tokens top-k, top-p and min-p keep.
    static func filter(logits: UnsafeBufferPointer<Float>, parameters: SamplingParameters) -> (probabilities: [Float], candidates: [Int]) {
        let vocabulary = logits.count
        let inverseTemperature = 1 / parameters.temperature
        let maximum = logits.max() ?? 0
        // Unnormalized probabilities; the scan below normalizes by the kept mass.
        var probabilities = [Float](repeating: 0, count: vocabulary)
        var total: Float = 0
        for index in 0..<vocabulary {
            let p = expf((logits[index] - maximum) * inverseTemperature)
            probabilities[index] = p
            total += p
        }
        var candidates: [Int]
        let filtersByRank = parameters.topK > 0 || parameters.topP < 1
        if filtersByRank {
            // Sort only when a rank rule needs it (a full sort per token costs ~1 ms at 32k).
            var order = Array(0..<vocabulary)
            if parameters.topK > 0 && parameters.topK < vocabulary {
                order = topIndices(logits, count: parameters.topK).map(Int.init)
            } else {
                order.sort { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }
            }
            if parameters.topP < 1 {
                let kept = order.reduce(Float(0)) { $0 + probabilities[$1] }
                var cumulative: Float = 0
                var cut = order.count
                for (rank, index) in order.enumerated() {
                    cumulative += probabilities[index]
                    if cumulative >= parameters.topP * kept { cut = rank + 1; break }
                }
                order.removeSubrange(cut...)
            }
            candidates = order
        } else {
            candidates = Array(0..<vocabulary)
        }
        if parameters.minP > 0 {
            // The most likely token has probability 1 relative to itself (exp(0)).
            let threshold = parameters.minP
            candidates = candidates.filter { probabilities[$0] >= threshold }
        }
        return (probabilities, candidates)
    }

    /// Indices of the `count` largest values, largest first (ties: lower index first).
    static func topIndices(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int32] {
        let count = Swift.min(count, values.count)
        var best: [Int32] = []
        best.reserveCapacity(count + 1)
        for index in 0..<values.count {
            let value = values[index]
            if best.count == count, let last = best.last, !(value > values[Int(last)]) { continue }
            var position = best.count
            while position > 0 && value > values[Int(best[position - 1])] { position -= 1 }
            best.insert(Int32(index), at: position)
            if best.count > count { best.removeLast() }
        }
        return best
    }

    static func logSumExp(_ values: UnsafeBufferPointer<Float>) -> Float {
        let maximum = values.max() ?? 0
        var sum: Float = 0
        for value in values { sum += expf(value - maximum) }
        return maximum + logf(sum)
    }
}
