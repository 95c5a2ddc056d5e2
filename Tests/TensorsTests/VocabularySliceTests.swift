import Foundation
import TensorComparison
import Testing
import Tensors

/// The vocabulary-sliced kernels of tensor parallelism, combined over slices the way the tensor
/// group combines them, equal the whole-vocabulary kernels.
@Suite struct VocabularySliceTests {
    let vocabulary = 37
    let targets: [Int32] = [5, -100, 36, 0, -100, 17, 36, 12]
    /// Uneven slices, as tp 3 splits 37 ids.
    let slices = [0..<13, 13..<25, 25..<37]

    @Test func partialLossesCombineToTheFusedLossAndGradient() {
        let rows = targets.count
        let logits = randomValues(rows * vocabulary, seed: 211, scale: 4)
        let whole = withBuffers([logits, [Float](repeating: 0, count: rows), [Float](repeating: 0, count: rows),
                                 [Float](repeating: 0, count: logits.count)]) { p in
            let total = CrossEntropy.forward(losses: p[1], logSumExp: p[2], logits: p[0], targets: targets,
                                             rowCount: rows, vocabularySize: vocabulary)
            CrossEntropy.backward(logitsGradient: p[3], logSumExp: p[2], logits: p[0], targets: targets,
                                  logProbabilityGradient: [Float](repeating: -Float(1 / Double(total.targetCount)), count: rows),
                                  rowCount: rows, vocabularySize: vocabulary)
        }
        // Each slice's partial figures, then the group's maximum and sums.
        var partials: [[Float]] = [], targetLogits: [[Float]] = []
        for slice in slices {
            let local = (0..<rows).flatMap { row in logits[(row * vocabulary + slice.lowerBound)..<(row * vocabulary + slice.upperBound)] }
            let out = withBuffers([local, [Float](repeating: 9, count: rows), [Float](repeating: 9, count: rows)]) { p in
                CrossEntropy.partialForward(logSumExp: p[1], targetLogits: p[2], logits: p[0], targets: targets,
                                            rowCount: rows, vocabularySize: slice.count, vocabularyStart: slice.lowerBound)
            }
            partials.append(out[1])
            targetLogits.append(out[2])
        }
        let maxima = (0..<rows).map { row in partials.map { $0[row] }.max() ?? 0 }
        let sums = (0..<rows).map { row in partials.reduce(Float(0)) { $0 + exp($1[row] - maxima[row]) } }
        let targetSum = (0..<rows).map { row in targetLogits.reduce(Float(0)) { $0 + $1[row] } }
        var losses = [Float](repeating: 0, count: rows), logSumExp = maxima
        let total = CrossEntropy.finish(losses: &losses, logSumExp: &logSumExp, sumOfExponentials: sums,
                                        targetLogits: targetSum, targets: targets, rowCount: rows)
        #expect(total.targetCount == 6)
        #expect(maxRelativeDifference(losses, whole[1]) <= 1e-6)
        // Each slice's gradient is its columns of the whole gradient.
        for slice in slices {
            let local = (0..<rows).flatMap { row in logits[(row * vocabulary + slice.lowerBound)..<(row * vocabulary + slice.upperBound)] }
            let gradient = withBuffers([local, logSumExp, [Float](repeating: 7, count: local.count)]) { p in
                CrossEntropy.backward(logitsGradient: p[2], logSumExp: p[1], logits: p[0], targets: targets,
                                      logProbabilityGradient: [Float](repeating: -Float(1 / Double(total.targetCount)), count: rows),
                                      rowCount: rows, vocabularySize: slice.count, vocabularyStart: slice.lowerBound)
            }[2]
            let expected = (0..<rows).flatMap { row in whole[3][(row * vocabulary + slice.lowerBound)..<(row * vocabulary + slice.upperBound)] }
            #expect(maxRelativeDifference(gradient, expected) <= 1e-5, "slice \(slice)")
        }
    }

    @Test func embeddingSlicesSumToTheWholeTable() {
        let hidden = 5
        let tokens: [Int32] = [0, 36, 13, 12, 25, 24, 13]
        let table = randomValues(vocabulary * hidden, seed: 212)
        let outputGradient = randomValues(tokens.count * hidden, seed: 213)
        let whole = withBuffers([[Float](repeating: 0, count: tokens.count * hidden), [Float](repeating: 0, count: table.count)]) { p in
            Embedding.forward(output: p[0], tokens: tokens, table: table, tokenCount: tokens.count, vocabularySize: vocabulary, hiddenSize: hidden)
            Embedding.backward(tableGradient: p[1], outputGradient: outputGradient, tokens: tokens, tokenCount: tokens.count,
                               vocabularySize: vocabulary, hiddenSize: hidden)
        }
        var summed = [Float](repeating: 0, count: tokens.count * hidden)
        for slice in slices {
            let local = Array(table[(slice.lowerBound * hidden)..<(slice.upperBound * hidden)])
            let out = withBuffers([[Float](repeating: 9, count: tokens.count * hidden), [Float](repeating: 0, count: local.count)]) { p in
                Embedding.forward(output: p[0], tokens: tokens, table: local, tokenCount: tokens.count, vocabularySize: slice.count,
                                  hiddenSize: hidden, vocabularyStart: slice.lowerBound)
                Embedding.backward(tableGradient: p[1], outputGradient: outputGradient, tokens: tokens, tokenCount: tokens.count,
                                   vocabularySize: slice.count, hiddenSize: hidden, vocabularyStart: slice.lowerBound)
            }
            for index in summed.indices { summed[index] += out[0][index] }
            expectSameBits(out[1], whole[1][(slice.lowerBound * hidden)..<(slice.upperBound * hidden)], "slice \(slice)")
        }
        expectSameBits(summed, whole[0], "embedding summed over slices")
    }
}
