import Foundation
import Serving
import Tensors
import Testing

/// The two log-probabilities a trainer gets per token (`SampledToken`): the raw one and the one
/// under the distribution the token was drawn from, each against a naive reference in Double.
@Suite struct LogprobTests {
    init() { useSingleThreadedBLAS() }

    /// log softmax(raw logits)[token].
    static func rawLogprob(_ logits: [Float], _ token: Int) -> Double {
        let values = logits.map(Double.init)
        let maximum = values.max() ?? 0
        return values[token] - maximum - log(values.map { exp($0 - maximum) }.reduce(0, +))
    }

    /// log q(token), q the sampling distribution: penalties, temperature, top-k, top-p (the
    /// smallest most-likely set reaching p of the kept mass), min-p, renormalized; nil when the
    /// token is outside q's support. Written from the rules' definitions, not from `Sampler`.
    static func samplingLogprob(_ logits: [Float], _ token: Int, _ parameters: SamplingParameters,
                                seen: Set<Int32> = [], outputCounts: [Int32: Int] = [:]) -> Double? {
        var values = logits.map(Double.init)
        for token in seen {
            let value = values[Int(token)], penalty = Double(parameters.repetitionPenalty)
            values[Int(token)] = value > 0 ? value / penalty : value * penalty
        }
        for (token, count) in outputCounts {
            values[Int(token)] -= Double(parameters.presencePenalty) + Double(parameters.frequencyPenalty) * Double(count)
        }
        if parameters.temperature == 0 {
            let best = values.indices.max { values[$0] < values[$1] || (values[$0] == values[$1] && $0 > $1) }
            return best == token ? 0 : nil
        }
        let maximum = values.max() ?? 0
        let weights = values.map { exp(($0 - maximum) / Double(parameters.temperature)) }
        var order = weights.indices.sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
        if parameters.topK > 0 { order = Array(order.prefix(parameters.topK)) }
        if parameters.topP < 1 {
            let mass = order.reduce(0) { $0 + weights[$1] }
            var cumulative = 0.0
            var kept: [Int] = []
            for index in order {
                kept.append(index)
                cumulative += weights[index]
                if cumulative >= Double(parameters.topP) * mass { break }
            }
            order = kept
        }
        if parameters.minP > 0 { order = order.filter { weights[$0] >= Double(parameters.minP) } }
        guard order.contains(token) else { return nil }
        return log(weights[token] / order.reduce(0) { $0 + weights[$1] })
    }

    static let cases: [SamplingParameters] = [
        SamplingParameters(temperature: 1, logprobs: 0),
        SamplingParameters(temperature: 0.7, topK: 5, logprobs: 0),
        SamplingParameters(temperature: 1.3, topP: 0.8, logprobs: 0),
        SamplingParameters(temperature: 0.9, topK: 12, topP: 0.9, minP: 0.05, logprobs: 0),
        SamplingParameters(temperature: 0.8, repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.3, logprobs: 0),
        SamplingParameters(temperature: 0, presencePenalty: 0.5, logprobs: 0),
        // No logprobs asked: the raw log-probability is not computed (0), the sampling one is.
        SamplingParameters(temperature: 1.1, topK: 8),
    ]

    @Test(arguments: cases.indices) func samplerReportsBothLogprobs(caseIndex: Int) {
        let parameters = Self.cases[caseIndex]
        var generator = SplitMix64(seed: 40 + UInt64(caseIndex))
        let seen: Set<Int32> = [0, 3, 7, 11]
        let outputCounts: [Int32: Int] = [3: 2, 7: 1]
        for draw in 0..<60 {
            let logits = (0..<48).map { _ in 2.5 * generator.nextNormal() }
            var row = logits
            let sampled = row.withUnsafeMutableBufferPointer {
                Sampler.sample(logits: $0, parameters: parameters, seen: seen, outputCounts: outputCounts, generator: &generator)
            }
            let token = Int(sampled.token)
            let expected = Self.samplingLogprob(logits, token, parameters, seen: seen, outputCounts: outputCounts)
            guard let expected else {
                Issue.record("draw \(draw): token \(token) is outside the reference's support")
                continue
            }
            #expect(abs(Double(sampled.samplingLogprob) - expected) < 2e-5, "draw \(draw): \(sampled.samplingLogprob) vs \(expected)")
            let raw = parameters.logprobs == nil ? 0 : Self.rawLogprob(logits, token)
            #expect(abs(Double(sampled.logprob) - raw) < 2e-5, "draw \(draw): raw \(sampled.logprob) vs \(raw)")
        }
    }

    /// Through the engine: each generated token's two log-probabilities equal the references
    /// computed from the logits row it was drawn from (the engine's logits observer), with the
    /// penalties' state (tokens seen, output counts) rebuilt from the tokens themselves.
    @Test func engineReportsBothLogprobsPerToken() throws {
        let config = servingConfig()
        let engine = Engine(weights: servingWeights(config, scale: 0.1), configuration: EngineConfiguration(blockCount: 32, blockSize: 4),
                            tokenizer: nil)
        var rows: [[Float]] = []
        engine.logitsObserver = { _, row in rows.append(Array(row)) }
        let prompt = randomTokens(7, vocabulary: config.vocabSize, seed: 8)
        let parameters = SamplingParameters(maxTokens: 10, temperature: 0.8, topK: 40, topP: 0.9, repetitionPenalty: 1.2,
                                            frequencyPenalty: 0.5, seed: 17, logprobs: 0)
        let id = try engine.add(prompt: prompt, parameters: parameters)
        let sample = try #require(engine.runSamplesToCompletion()[id]?.first)
        #expect(sample.tokens.count == 10 && rows.count == 10)
        var seen = Set(prompt)
        var outputCounts: [Int32: Int] = [:]
        for (position, token) in sample.tokens.enumerated() {
            let expected = try #require(Self.samplingLogprob(rows[position], Int(token), parameters, seen: seen, outputCounts: outputCounts),
                                        "token \(position) is outside the sampling distribution")
            #expect(abs(Double(sample.samplingLogprobs[position]) - expected) < 2e-5, "token \(position)")
            #expect(abs(Double(sample.logprobs[position]) - Self.rawLogprob(rows[position], Int(token))) < 2e-5, "token \(position)")
            seen.insert(token)
            outputCounts[token, default: 0] += 1
        }
        // A sampled token is never likelier under q than when q keeps only it: log q ≤ 0.
        #expect(sample.samplingLogprobs.allSatisfy { $0 <= 0 })
    }
}
