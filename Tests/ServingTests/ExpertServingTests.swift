import DataPipeline
import Model
import Serving
import Tensors
import Testing

/// The engine on a mixture-of-experts model (rows grouped by expert): many sequences together
/// get the tokens each gets alone, and those are the training model's greedy continuation.
@Suite struct ExpertServingTests {
    init() { useSingleThreadedBLAS() }

    @Test(arguments: [(LlamaConfig.ModelType.mixtral, true), (.qwen3MoE, false)])
    func batchedGreedyEqualsAloneAndReference(modelType: LlamaConfig.ModelType, normalize: Bool) throws {
        var config = servingConfig(modelType: modelType)
        config.numLocalExperts = 4
        config.numExpertsPerTok = 2
        config.moeIntermediateSize = config.intermediateSize
        config.normTopkProb = normalize
        let weights = servingWeights(config)
        let prompts = (0..<6).map { randomTokens(3 + $0 * 5 % 17, vocabulary: config.vocabSize, seed: 40 + UInt64($0)) }
        func run(_ engine: Engine, _ prompts: [[Int32]]) throws -> [[Int32]] {
            let ids = try prompts.map { try engine.add(prompt: $0, parameters: .greedy(maxTokens: 9)) }
            let results = engine.runToCompletion()
            return ids.map { results[$0] ?? [] }
        }
        let together = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 4, tokenBudget: 7),
                              tokenizer: nil)
        let batched = try run(together, prompts)
        for (index, prompt) in prompts.enumerated() {
            let alone = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 1, tokenBudget: 64),
                               tokenizer: nil)
            let single = try run(alone, [prompt])[0]
            #expect(batched[index] == single, "\(modelType) prompt \(index)")
            #expect(single == referenceGreedy(weights, prompt: prompt, count: 9), "\(modelType) prompt \(index) vs the training model")
        }
        #expect(together.statistics.freeBlocks == 64)
    }
}
