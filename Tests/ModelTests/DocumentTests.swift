import Foundation
import Model
import Tensors
import TensorComparison
import Testing

/// Packed rows: positions restart per document, and document masking makes each document's
/// tokens see only their own document.
@Suite struct DocumentTests {
    init() { useSingleThreadedBLAS() }

    let config = tinyConfig()
    let sequenceLength = 12

    func losses(_ model: LlamaModel, _ batch: Batch, _ parameters: ArenaParameters) -> [Float] {
        model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
        return Array(model.tokenLosses)
    }

    /// A row packing document A (5 tokens) and B (7 tokens) gives A's and B's per-token losses
    /// and the sum of their gradients, as if each ran alone at the start of a row.
    @Test func packedDocumentsWithMaskingMatchSeparateRuns() {
        let layout = ParameterLayout(config: config)
        let parameters = randomParameters(layout, seed: 31)
        let row = Batch(batchSize: 1, sequenceLength: sequenceLength, vocabularySize: config.vocabSize, seed: 32)
        let (a, b) = (0..<5, 5..<12)
        var packed = row
        packed.positions = (0..<5).map(Int32.init) + (0..<7).map(Int32.init)
        packed.targets[4] = CrossEntropy.defaultIgnoreIndex  // A's last token would predict B's first.
        // Each document alone: its tokens first, then filler whose targets do not count (causal
        // attention keeps the filler from touching the document's tokens).
        func alone(_ range: Range<Int>) -> Batch {
            var batch = row
            let filler = sequenceLength - range.count
            batch.tokens = Array(row.tokens[range]) + Array(repeating: 1, count: filler)
            batch.targets = Array(packed.targets[range]) + Array(repeating: CrossEntropy.defaultIgnoreIndex, count: filler)
            batch.positions = (0..<sequenceLength).map(Int32.init)
            return batch
        }
        let masked = LlamaModel(config: config, microBatchSize: 1, sequenceLength: sequenceLength, documentMasking: true)
        let plain = LlamaModel(config: config, microBatchSize: 1, sequenceLength: sequenceLength)

        let packedParameters = parameters.copy(), separateParameters = parameters.copy()
        let packedLosses = losses(masked, packed, packedParameters)
        masked.backward(lossScale: 1, parameters: packedParameters)
        let aLosses = losses(plain, alone(a), separateParameters)
        plain.backward(lossScale: 1, parameters: separateParameters)
        let bLosses = losses(plain, alone(b), separateParameters)
        plain.backward(lossScale: 1, parameters: separateParameters)

        let separate = Array(aLosses[0..<a.count]) + Array(bLosses[0..<b.count])
        let lossDifference = maxRelativeDifference(packedLosses, separate)
        let gradientDifference = maxRelativeDifference(packedParameters.gradients.values, separateParameters.gradients.values)
        print("packed vs separate documents: per-token loss max rel diff", lossDifference,
              "gradients max rel diff", gradientDifference)
        #expect(lossDifference <= 1e-5)
        #expect(gradientDifference <= 1e-5)

        // Without masking, B's tokens also attend to A: different losses for B, the same for A.
        let unmasked = losses(plain, packed, parameters.copy())
        expectSameBits(unmasked[a], packedLosses[a], "losses of document A, unmasked vs masked")
        #expect(maxRelativeDifference(Array(unmasked[b]), Array(packedLosses[b])) > 1e-3)
    }

    /// RoPE reads the given positions: shifting a whole row's positions keeps every relative
    /// distance and so the losses; restarting them mid-row changes the tokens after the restart.
    @Test func ropeUsesTheGivenPositions() {
        let parameters = randomParameters(ParameterLayout(config: config), seed: 33)
        let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: sequenceLength)
        let batch = Batch(batchSize: 2, sequenceLength: sequenceLength, vocabularySize: config.vocabSize, seed: 34)
        let reference = losses(model, batch, parameters)

        var shifted = batch
        shifted.positions = batch.positions.map { $0 + 7 }
        let shiftedLosses = losses(model, shifted, parameters)
        let shiftDifference = maxRelativeDifference(shiftedLosses, reference)
        print("positions shifted by 7: per-token loss max rel diff", shiftDifference)
        #expect(shiftDifference <= 1e-5)
        #expect(shiftedLosses != reference)  // the angles did change

        var restarted = batch
        restarted.positions[sequenceLength + 6..<2 * sequenceLength] = [0, 1, 2, 3, 4, 5]
        let restartedLosses = losses(model, restarted, parameters)
        expectSameBits(restartedLosses[0..<sequenceLength + 6], reference[0..<sequenceLength + 6], "losses before the restart")
        #expect(maxRelativeDifference(Array(restartedLosses[(sequenceLength + 6)...]),
                                      Array(reference[(sequenceLength + 6)...])) > 1e-3)
    }
}
