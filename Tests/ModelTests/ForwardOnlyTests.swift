import Model
import TensorComparison
import Tensors
import Testing

/// A forward-only model (references, scorers) computes what a training model computes, in less
/// activation memory.
@Suite struct ForwardOnlyTests {
    init() { useSingleThreadedBLAS() }

    @Test(arguments: [false, true])
    func forwardOnlyGivesTheTrainingModelsBitsInLessMemory(documentMasking: Bool) {
        let config = tinyConfig(layers: 3)
        let parameters = randomParameters(ParameterLayout(config: config), seed: 9)
        var batch = Batch(batchSize: 2, sequenceLength: 9, vocabularySize: config.vocabSize, seed: 10)
        batch.positions[13..<18] = [0, 1, 2, 3, 4]
        var results: [([Float], [SequenceLogProbability])] = []
        for forwardOnly in [false, true] {
            let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 9, documentMasking: documentMasking,
                                   forwardOnly: forwardOnly)
            model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
            results.append((Array(model.tokenLogProbabilities), model.sequenceLogProbabilities(over: [0..<9, 9..<13, 13..<18])))
        }
        expectSameBits(results[1].0, results[0].0, "token log-probabilities")
        #expect(results[0].1 == results[1].1)
        // The sequence figures are the token log-probabilities summed over counted targets.
        let counted = (9..<13).filter { batch.targets[$0] != CrossEntropy.defaultIgnoreIndex }
        #expect(results[1].1[1].count == counted.count)
        #expect(results[1].1[1].sum == counted.reduce(0.0) { $0 + Double(results[1].0[$1]) })

        let training = LlamaModel.activationCount(config: config, microBatchSize: 2, sequenceLength: 9, recompute: true)
        let inference = LlamaModel.activationCount(config: config, microBatchSize: 2, sequenceLength: 9, recompute: false,
                                                   forwardOnly: true)
        print("activation floats: training with recomputation \(training), forward-only \(inference)")
        #expect(inference < training)
    }
}
