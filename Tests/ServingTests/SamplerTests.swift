import Foundation
import Serving
import Tensors
import Testing

@Suite struct SamplerTests {
    init() { useSingleThreadedBLAS() }

    let logits: [Float] = [2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]

    func counts(_ parameters: SamplingParameters, draws: Int = 4000, seed: UInt64 = 1) -> [Int] {
        var generator = SplitMix64(seed: seed)
        var histogram = [Int](repeating: 0, count: logits.count)
        for _ in 0..<draws {
            var row = logits
            let sampled = row.withUnsafeMutableBufferPointer {
                Sampler.sample(logits: $0, parameters: parameters, seen: [], outputCounts: [:], generator: &generator)
            }
            histogram[Int(sampled.token)] += 1
        }
        return histogram
    }

    @Test func temperatureOneFollowsSoftmax() {
        let histogram = counts(SamplingParameters(temperature: 1), draws: 20000)
        let total = logits.map { expf($0) }.reduce(0, +)
        for (index, count) in histogram.enumerated() {
            let expected = 20000 * Double(expf(logits[index]) / total)
            // Within 5 standard deviations of the binomial count.
            let sigma = (expected * (1 - expected / 20000)).squareRoot()
            #expect(abs(Double(count) - expected) <= 5 * sigma + 1, "token \(index): \(count) vs \(expected)")
        }
    }

    @Test func topKTopPMinPRestrictTheSupport() {
        let topK = counts(SamplingParameters(temperature: 1, topK: 3))
        #expect(topK[3...].allSatisfy { $0 == 0 } && topK[..<3].allSatisfy { $0 > 0 })
        // Probabilities ≈ .40 .25 .15 .09 …: top-p 0.7 keeps the first three (0.80 ≥ 0.7).
        let topP = counts(SamplingParameters(temperature: 1, topP: 0.7))
        #expect(topP[3...].allSatisfy { $0 == 0 } && topP[..<3].allSatisfy { $0 > 0 })
        // min-p 0.3: keep p ≥ 0.3 · p_max, i.e. logit ≥ 2 + ln 0.3 ≈ 0.80: the first three.
        let minP = counts(SamplingParameters(temperature: 1, minP: 0.3))
        #expect(minP[3...].allSatisfy { $0 == 0 } && minP[..<3].allSatisfy { $0 > 0 })
        // Low temperature concentrates on the top token.
        let cold = counts(SamplingParameters(temperature: 0.05))
        #expect(cold[0] > 3900)
    }

    @Test func greedyPenaltiesAndLogprobs() {
        var generator = SplitMix64(seed: 1)
        var row = logits
        var parameters = SamplingParameters.greedy(maxTokens: 1)
        parameters.logprobs = 2
        let plain = row.withUnsafeMutableBufferPointer {
            Sampler.sample(logits: $0, parameters: parameters, seen: [], outputCounts: [:], generator: &generator)
        }
        #expect(plain.token == 0)
        let logSumExp = logf(logits.map { expf($0) }.reduce(0, +))
        #expect(abs(plain.logprob - (2.0 - logSumExp)) < 1e-5)
        #expect(plain.topLogprobs.map(\.token) == [0, 1])
        // Presence 0.6 on token 0 (2.0 → 1.4) makes token 1 (1.5) the argmax.
        row = logits
        parameters.presencePenalty = 0.6
        let penalized = row.withUnsafeMutableBufferPointer {
            Sampler.sample(logits: $0, parameters: parameters, seen: [0], outputCounts: [0: 1], generator: &generator)
        }
        #expect(penalized.token == 1)
        // Repetition penalty 2 on token 0 (2.0 → 1.0) likewise.
        row = logits
        let repeated = row.withUnsafeMutableBufferPointer {
            Sampler.sample(logits: $0, parameters: SamplingParameters(temperature: 0, repetitionPenalty: 2), seen: [0],
                           outputCounts: [:], generator: &generator)
        }
        #expect(repeated.token == 1)
    }

    /// Same seed ⇒ same tokens through the whole engine; another seed ⇒ (almost surely) others.
    @Test func sameSeedSameTokens() throws {
        let config = servingConfig()
        let weights = servingWeights(config, scale: 0.1)
        func generate(seed: UInt64) throws -> [Int32] {
            let engine = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 32, blockSize: 4), tokenizer: nil)
            let id = try engine.add(prompt: [1, 2, 3], parameters: SamplingParameters(maxTokens: 20, temperature: 1, seed: seed))
            return engine.runToCompletion()[id] ?? []
        }
        let first = try generate(seed: 42)
        #expect(try generate(seed: 42) == first)
        #expect(try generate(seed: 43) != first)
    }
}
