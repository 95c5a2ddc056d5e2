import Foundation
import Model
import Tensors
import TensorComparison
import Testing

/// A model cut into parts (pipeline stages) and chained by hand — each part's output copied into
/// the next one's input, gradients copied back — computes bitwise what the whole model computes.
@Suite struct ModelPartTests {
    init() { useSingleThreadedBLAS() }

    @Test(arguments: [false, true]) func chainedPartsEqualTheWholeModel(recompute: Bool) {
        let config = tinyConfig(tied: false, layers: 3)
        let wholeLayout = ParameterLayout(config: config)
        let parameters = randomParameters(wholeLayout, seed: 91)
        var batch = Batch(batchSize: 2, sequenceLength: 9, vocabularySize: config.vocabSize, seed: 92)
        batch.positions[13..<18] = ArraySlice(0..<5)

        let whole = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 9, recompute: recompute)
        let reference = parameters.copy()
        let expected = step(whole, batch, reference)

        // Three parts: embedding + layer 0, layer 1, layer 2 + head.
        let parts = [ModelPart(layers: 0..<1, hasEmbedding: true, hasHead: false),
                     ModelPart(layers: 1..<2, hasEmbedding: false, hasHead: false),
                     ModelPart(layers: 2..<3, hasEmbedding: false, hasHead: true)]
        let models = parts.map { LlamaModel(config: config, microBatchSize: 2, sequenceLength: 9, recompute: recompute, part: $0) }
        let chained = parameters.copy()
        var total = CrossEntropy.Total(lossSum: 0, targetCount: 0)
        for (index, model) in models.enumerated() {
            if index > 0 { model.stageInput.update(from: models[index - 1].stageOutput, count: model.stageElementCount) }
            total = model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: chained)
        }
        #expect(total == expected)
        for (index, model) in models.enumerated().reversed() {
            if index < models.count - 1 {
                model.stageOutputGradient.update(from: models[index + 1].stageInputGradient, count: model.stageElementCount)
            }
            model.backward(lossScale: 1 / Float(expected.targetCount), parameters: chained)
        }
        expectSameBits(chained.gradients.values, reference.gradients.values, "gradients, chained parts vs whole model")
        #expect(chained.gradients.values.contains { $0 != 0 })
    }

    @Test func aPartsLayoutHoldsOnlyItsBlocksUnderGlobalNames() {
        let config = tinyConfig(tied: false, layers: 4)
        let middle = ParameterLayout(config: config, part: ModelPart(layers: 1..<3, hasEmbedding: false, hasHead: false))
        #expect(middle.blocks == [.layer(1), .layer(2)])
        #expect(middle.entries.first?.name == "model.layers.1.input_layernorm.weight")
        #expect(middle.entry(named: "model.embed_tokens.weight") == nil)
        // Two chunks of an interleaved stage: layers 0 and 2, in model order.
        let chunks = ParameterLayout(config: config, parts: [ModelPart(layers: 2..<3, hasEmbedding: false, hasHead: true),
                                                             ModelPart(layers: 0..<1, hasEmbedding: true, hasHead: false)])
        #expect(chunks.blocks == [.embedding, .layer(0), .layer(2), .head])
    }
}
