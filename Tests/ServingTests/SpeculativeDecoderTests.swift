import Serving
import Tensors
import Testing

@Suite struct SpeculativeDecoderTests {
    init() { useSingleThreadedBLAS() }

    /// Whatever the draft, the output is the target's own greedy output; a draft that is the
    /// target itself is always accepted.
    @Test(arguments: [1, 3, 5])
    func outputEqualsTargetGreedy(lookahead: Int) {
        let config = servingConfig(layers: 3)
        let target = servingWeights(config, seed: 3, scale: 0.15)
        let prompt = randomTokens(7, vocabulary: config.vocabSize, seed: 12)
        let expected = referenceGreedy(target, prompt: prompt, count: 20)
        let strangerConfig = servingConfig(layers: 1)
        for draft in [target.truncated(layers: 1), servingWeights(strangerConfig, seed: 99), target] {
            let decoder = SpeculativeDecoder(target: target, draft: draft, lookahead: lookahead)
            var streamed: [Int32] = []
            let output = decoder.generate(prompt: prompt, maxTokens: 20) { streamed += $0 }
            #expect(output == expected)
            #expect(Array(streamed.prefix(20)) == expected)
            if draft === target {
                #expect(decoder.acceptanceRate == 1)
                #expect(decoder.targetForwardCount < 20)
            }
        }
    }
}
