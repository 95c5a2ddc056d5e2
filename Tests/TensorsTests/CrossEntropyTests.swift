import TensorComparison
import Testing
import Tensors

@Suite struct CrossEntropyTests {
    let vocabulary = 37
    let targets: [Int32] = [5, -100, 36, 0, -100, 17, 36]

    @Test func forwardMatchesReferenceAndSkipsIgnoredRows() {
        let logits = randomValues(targets.count * vocabulary, seed: 111, scale: 4)
        let expected = crossEntropyReference(doubles(logits), targets: targets, vocabularySize: vocabulary)
        var total = CrossEntropy.Total(lossSum: 0, targetCount: 0)
        let result = withBuffers([logits, [Float](repeating: 9, count: targets.count), [Float](repeating: 9, count: targets.count)]) { p in
            total = CrossEntropy.forward(losses: p[1], logSumExp: p[2], logits: p[0], targets: targets,
                                         rowCount: targets.count, vocabularySize: vocabulary)
        }
        let difference = maxRelativeDifference(result[1], expected.losses)
        let meanDifference = abs(total.mean - expected.mean) / expected.mean
        print("CrossEntropy forward losses max rel diff", difference, "mean rel diff", meanDifference, "count", total.targetCount)
        #expect(difference <= 1e-5)
        #expect(meanDifference <= 1e-5)
        #expect(total.targetCount == 5)
        #expect(result[1][1] == 0 && result[1][4] == 0)
    }

    @Test func backwardMatchesFiniteDifferencesInPlace() {
        let logits = randomValues(targets.count * vocabulary, seed: 112, scale: 4)
        let result = withBuffers([logits, [Float](repeating: 0, count: targets.count),
                                  [Float](repeating: 0, count: targets.count), [Float](repeating: 5, count: logits.count), logits]) { p in
            let total = CrossEntropy.forward(losses: p[1], logSumExp: p[2], logits: p[0], targets: targets,
                                             rowCount: targets.count, vocabularySize: vocabulary)
            // The mean loss: ∂loss/∂log p = −1 / count on every row.
            let weights = [Float](repeating: -Float(1 / Double(total.targetCount)), count: targets.count)
            CrossEntropy.backward(logitsGradient: p[3], logSumExp: p[2], logits: p[0], targets: targets,
                                  logProbabilityGradient: weights, rowCount: targets.count, vocabularySize: vocabulary)
            // The gradient may overwrite the logits themselves.
            CrossEntropy.backward(logitsGradient: p[4], logSumExp: p[2], logits: p[4], targets: targets,
                                  logProbabilityGradient: weights, rowCount: targets.count, vocabularySize: vocabulary)
        }
        let expected = finiteDifferences(at: doubles(logits)) {
            crossEntropyReference($0, targets: targets, vocabularySize: vocabulary).mean
        }
        let difference = maxRelativeDifference(result[3], expected)
        print("CrossEntropy backward max rel diff", difference)
        #expect(difference <= 1e-3)
        expectSameBits(result[4], result[3], "in place vs separate gradient")
        #expect(result[3][vocabulary..<2 * vocabulary].allSatisfy { $0 == 0 })
    }

    /// A weight per row (∂loss/∂log p, as objectives give): the gradient of Σ −wᵣ·log pᵣ, with
    /// negative, zero and mixed weights, against finite differences of that weighted loss.
    @Test func perRowWeightsMatchFiniteDifferencesOfTheWeightedLoss() {
        let logits = randomValues(targets.count * vocabulary, seed: 114, scale: 4)
        let coefficients: [Double] = [0.7, 5, -1.3, 0, 2, 0.25, 1]  // loss = Σ cᵣ · lossᵣ
        let weights = coefficients.map { Float(-$0) }
        let result = withBuffers([logits, [Float](repeating: 0, count: targets.count),
                                  [Float](repeating: 0, count: targets.count), [Float](repeating: 5, count: logits.count)]) { p in
            CrossEntropy.forward(losses: p[1], logSumExp: p[2], logits: p[0], targets: targets,
                                 rowCount: targets.count, vocabularySize: vocabulary)
            CrossEntropy.backward(logitsGradient: p[3], logSumExp: p[2], logits: p[0], targets: targets,
                                  logProbabilityGradient: weights, rowCount: targets.count, vocabularySize: vocabulary)
        }
        let expected = finiteDifferences(at: doubles(logits)) { values in
            let losses = crossEntropyReference(values, targets: targets, vocabularySize: vocabulary).losses
            return zip(losses, coefficients).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let difference = maxRelativeDifference(result[3], expected)
        print("CrossEntropy weighted backward max rel diff", difference)
        #expect(difference <= 1e-3)
        // A zero weight and an ignored target both give a zero row.
        #expect(result[3][3 * vocabulary..<4 * vocabulary].allSatisfy { $0 == 0 })
        #expect(result[3][vocabulary..<2 * vocabulary].allSatisfy { $0 == 0 })
    }

    @Test func threadsGiveTheSameBits() {
        let rows = 40, vocabulary = 300
        let targets = (0..<rows).map { Int32($0 % 7 == 3 ? -100 : ($0 * 37) % vocabulary) }
        let logits = randomValues(rows * vocabulary, seed: 113, scale: 5)
        let results = [1, 3].map { count in
            var total = CrossEntropy.Total(lossSum: 0, targetCount: 0)
            let buffers = withBuffers([logits, [Float](repeating: 0, count: rows), [Float](repeating: 0, count: rows),
                                       [Float](repeating: 0, count: logits.count)]) { p in
                total = CrossEntropy.forward(losses: p[1], logSumExp: p[2], logits: p[0], targets: targets,
                                             rowCount: rows, vocabularySize: vocabulary, threads: KernelThreads(count: count))
                CrossEntropy.backward(logitsGradient: p[3], logSumExp: p[2], logits: p[0], targets: targets,
                                      logProbabilityGradient: [Float](repeating: -0.25, count: rows),
                                      rowCount: rows, vocabularySize: vocabulary, threads: KernelThreads(count: count))
            }
            return (total, buffers)
        }
        let expected = crossEntropyReference(doubles(logits), targets: targets, vocabularySize: vocabulary)
        print("CrossEntropy 40×300 mean rel diff", abs(results[0].0.mean - expected.mean) / expected.mean)
        #expect(abs(results[0].0.mean - expected.mean) / expected.mean <= 1e-5)
        #expect(results[0].0 == results[1].0)
        expectSameBits(results[1].1, results[0].1, "threads 3 vs 1")
    }

    /// Rows longer than the kernel's 2048-element blocks, ragged, with the maximum placed in a
    /// late block: exercises the pipelined next-block maximum and the running-sum rescale.
    @Test(arguments: [2048, 4096 + 37, 5000, 16])
    func longRowsAcrossBlocks(vocabulary: Int) {
        let rows = 3
        var logits = randomValues(rows * vocabulary, seed: UInt64(vocabulary), scale: 6)
        logits[vocabulary - 1] = 30           // row 0: maximum in the ragged tail
        logits[vocabulary + vocabulary / 2] = 25  // row 1: maximum in a middle block
        let targets: [Int32] = [Int32(vocabulary - 1), 3, Int32(vocabulary / 3)]
        let expected = crossEntropyReference(doubles(logits), targets: targets, vocabularySize: vocabulary)
        let result = withBuffers([logits, [Float](repeating: 0, count: rows), [Float](repeating: 0, count: rows)]) { p in
            CrossEntropy.forward(losses: p[1], logSumExp: p[2], logits: p[0], targets: targets,
                                 rowCount: rows, vocabularySize: vocabulary)
        }
        let difference = maxRelativeDifference(result[1], expected.losses)
        print("CrossEntropy \(rows)×\(vocabulary) losses max rel diff", difference)
        #expect(difference <= 1e-5)
    }
}
