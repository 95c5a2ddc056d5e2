import Serving
import Tensors
import Testing

/// Speculative sampling keeps the target's distribution: the frequencies of many sampled
/// continuations against the exact distribution enumerated from the training model.
@Suite struct SpeculativeSamplingTests {
    init() { useSingleThreadedBLAS() }

    @Test func continuationsFollowTheTargetDistribution() {
        let vocabulary = 12
        let target = servingWeights(servingConfig(vocabulary: vocabulary, layers: 2), seed: 3, scale: 0.3)
        // An unrelated draft: it disagrees often, so rejections and residual draws are exercised.
        let draft = servingWeights(servingConfig(vocabulary: vocabulary, layers: 1), seed: 77, scale: 0.3)
        var parameters = SamplingParameters(maxTokens: 3, temperature: 1.3, topK: 8)
        parameters.ignoreEOS = true
        let prompt: [Int32] = [1, 5, 7]

        // Exact joint distribution of the three tokens under target and, for the power check, draft.
        func next(_ weights: InferenceWeights, _ tokens: [Int32]) -> [Float] {
            let logits = referenceLogits(weights, tokens)
            return logits[(tokens.count - 1) * vocabulary..<tokens.count * vocabulary].withUnsafeBufferPointer {
                Sampler.distribution(logits: $0, parameters: parameters)
            }
        }
        func joint(_ weights: InferenceWeights) -> [Double] {
            var result = [Double](repeating: 0, count: vocabulary * vocabulary * vocabulary)
            let first = next(weights, prompt)
            for a in 0..<vocabulary where first[a] > 0 {
                let second = next(weights, prompt + [Int32(a)])
                for b in 0..<vocabulary where second[b] > 0 {
                    let third = next(weights, prompt + [Int32(a), Int32(b)])
                    for c in 0..<vocabulary {
                        result[(a * vocabulary + b) * vocabulary + c] = Double(first[a]) * Double(second[b]) * Double(third[c])
                    }
                }
            }
            return result
        }
        let exact = joint(target)

        let samples = 4000
        var counts = [Int](repeating: 0, count: exact.count)
        let decoder = SpeculativeDecoder(target: target, draft: draft, lookahead: 2)
        for index in 0..<samples {
            var generator = SplitMix64(seed: 9000 + UInt64(index))
            let output = decoder.decodeSampled(prompt: prompt, maxTokens: 3, parameters: parameters, generator: &generator) { _ in true }
            counts[(Int(output[0]) * vocabulary + Int(output[1])) * vocabulary + Int(output[2])] += 1
        }
        #expect(decoder.acceptanceRate > 0.1 && decoder.acceptanceRate < 0.9, "acceptance \(decoder.acceptanceRate)")

        // Marginals of each position and the joint of the last two (the tokens the verification decides).
        let projections: [(String, (Int) -> Int, Int)] = [
            ("token 1", { $0 / (vocabulary * vocabulary) }, vocabulary),
            ("token 2", { ($0 / vocabulary) % vocabulary }, vocabulary),
            ("token 3", { $0 % vocabulary }, vocabulary),
            ("tokens 2 and 3", { $0 % (vocabulary * vocabulary) }, vocabulary * vocabulary),
        ]
        for (name, project, cells) in projections {
            let statistic = chiSquare(counts, exact, project: project, cells: cells, samples: samples)
            #expect(statistic.value < statistic.threshold, "\(name): χ² \(statistic.value) over \(statistic.degrees) degrees of freedom")
        }
        // The check has power: the draft's own distribution is far off by the same statistic.
        let draftExact = joint(draft)
        let wrong = chiSquare(counts, draftExact, project: { $0 % (vocabulary * vocabulary) }, cells: vocabulary * vocabulary, samples: samples)
        #expect(wrong.value > wrong.threshold, "the draft's distribution should be rejected: χ² \(wrong.value)")
    }

    /// Pearson's χ² over cells expected at least 5 times (the rest pooled in one cell; an outcome
    /// of probability 0 that occurs makes it infinite), and a
    /// threshold of df + 6·√(2·df): far beyond chance for fixed seeds, far below a real bias.
    private func chiSquare(_ counts: [Int], _ exact: [Double], project: (Int) -> Int, cells: Int,
                           samples: Int) -> (value: Double, degrees: Int, threshold: Double) {
        var observed = [Double](repeating: 0, count: cells), expected = [Double](repeating: 0, count: cells)
        for index in counts.indices {
            observed[project(index)] += Double(counts[index])
            expected[project(index)] += exact[index] * Double(samples)
        }
        var value = 0.0, used = 0
        var pooledObserved = 0.0, pooledExpected = 0.0
        for cell in 0..<cells {
            if expected[cell] >= 5 {
                value += (observed[cell] - expected[cell]) * (observed[cell] - expected[cell]) / expected[cell]
                used += 1
            } else {
                pooledObserved += observed[cell]
                pooledExpected += expected[cell]
            }
        }
        if pooledExpected > 0 {
            value += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / pooledExpected
            used += 1
        } else if pooledObserved > 0 {
            // An outcome of probability 0 (e.g. outside top-k) was drawn.
            value = .infinity
        }
        let degrees = Swift.max(1, used - 1)
        return (value, degrees, Double(degrees) + 6 * (2 * Double(degrees)).squareRoot())
    }
}
