import TensorComparison
import Testing
import Tensors

@Suite struct EmbeddingTests {
    let vocabulary = 11, hidden = 21
    // Repeated ids so the scatter-add has to sum several rows into one.
    let tokens: [Int32] = [3, 0, 10, 3, 7, 3, 1, 10, 5]

    @Test func forwardGathersRows() {
        let table = randomValues(vocabulary * hidden, seed: 41)
        let expected = embeddingReference(doubles(table), tokens: tokens, hiddenSize: hidden)
        let output = withBuffers([table, [Float](repeating: 0, count: tokens.count * hidden)]) { p in
            Embedding.forward(output: p[1], tokens: tokens, table: p[0],
                              tokenCount: tokens.count, vocabularySize: vocabulary, hiddenSize: hidden)
        }[1]
        let difference = maxRelativeDifference(output, expected)
        print("Embedding forward max rel diff", difference)
        #expect(difference == 0)
    }

    @Test func backwardMatchesFiniteDifferencesAndThreads() {
        let table = randomValues(vocabulary * hidden, seed: 42)
        let r = randomValues(tokens.count * hidden, seed: 43)
        let start = randomValues(table.count, seed: 44)
        let results = [1, 3].map { count in
            withBuffers([start, r]) { p in
                Embedding.backward(tableGradient: p[0], outputGradient: p[1], tokens: tokens,
                                   tokenCount: tokens.count, vocabularySize: vocabulary, hiddenSize: hidden,
                                   threads: KernelThreads(count: count))
            }[0]
        }
        let expected = finiteDifferences(at: doubles(table)) {
            weightedSum(embeddingReference($0, tokens: tokens, hiddenSize: hidden), doubles(r))
        }
        let difference = maxRelativeDifference(added(results[0], over: start), expected)
        print("Embedding backward max rel diff", difference)
        #expect(difference <= 1e-3)
        expectSameBits(results[1], results[0], "threads 3 vs 1")
    }
}

@Suite struct RMSNormTests {
    // 37 columns: two full vectors and a ragged tail.
    let rows = 4, hidden = 37, epsilon: Float = 1e-5

    @Test func forwardMatchesReference() {
        let input = randomValues(rows * hidden, seed: 51, scale: 2)
        let weight = randomValues(hidden, seed: 52)
        let expected = rmsNormReference(doubles(input), doubles(weight), rows: rows, hiddenSize: hidden,
                                        epsilon: Double(epsilon))
        let result = withBuffers([input, weight, [Float](repeating: 0, count: input.count), [Float](repeating: 0, count: rows)]) { p in
            RMSNorm.forward(output: p[2], rstd: p[3], input: p[0], weight: p[1],
                            rowCount: rows, hiddenSize: hidden, epsilon: epsilon)
        }
        let difference = maxRelativeDifference(result[2], expected)
        print("RMSNorm forward max rel diff", difference)
        #expect(difference <= 1e-5)
    }

    @Test func backwardMatchesFiniteDifferencesAndThreads() {
        let input = randomValues(rows * hidden, seed: 53, scale: 2)
        let weight = randomValues(hidden, seed: 54)
        let r = randomValues(rows * hidden, seed: 55)
        let (inputStart, weightStart) = (randomValues(input.count, seed: 56), randomValues(hidden, seed: 57))
        let results = [1, 3].map { count in
            withBuffers([input, weight, [Float](repeating: 0, count: input.count), [Float](repeating: 0, count: rows),
                         inputStart, weightStart, r]) { p in
                RMSNorm.forward(output: p[2], rstd: p[3], input: p[0], weight: p[1],
                                rowCount: rows, hiddenSize: hidden, epsilon: epsilon)
                RMSNorm.backward(inputGradient: p[4], weightGradient: p[5], outputGradient: p[6],
                                 rstd: p[3], input: p[0], weight: p[1], rowCount: rows, hiddenSize: hidden,
                                 threads: KernelThreads(count: count))
            }
        }
        func loss(_ x: [Double], _ w: [Double]) -> Double {
            weightedSum(rmsNormReference(x, w, rows: rows, hiddenSize: hidden, epsilon: Double(epsilon)), doubles(r))
        }
        let inputDifference = maxRelativeDifference(added(results[0][4], over: inputStart),
                                                    finiteDifferences(at: doubles(input)) { loss($0, doubles(weight)) })
        let weightDifference = maxRelativeDifference(added(results[0][5], over: weightStart),
                                                     finiteDifferences(at: doubles(weight)) { loss(doubles(input), $0) })
        print("RMSNorm backward input max rel diff", inputDifference, "weight max rel diff", weightDifference)
        #expect(inputDifference <= 1e-3)
        #expect(weightDifference <= 1e-3)
        expectSameBits(results[1], results[0], "threads 3 vs 1")
    }
}

@Suite struct SwiGLUAndResidualTests {
    let count = 53

    @Test func swiGLUForwardAndBackward() {
        let gate = randomValues(count, seed: 61, scale: 4), up = randomValues(count, seed: 62, scale: 2)
        let r = randomValues(count, seed: 63)
        let (gateStart, upStart) = (randomValues(count, seed: 64), randomValues(count, seed: 65))
        let result = withBuffers([gate, up, [Float](repeating: 0, count: count), gateStart, upStart, r]) { p in
            SwiGLU.forward(output: p[2], gate: p[0], up: p[1], count: count)
            SwiGLU.backward(gateGradient: p[3], upGradient: p[4], outputGradient: p[5], gate: p[0], up: p[1], count: count)
        }
        let forwardDifference = maxRelativeDifference(result[2], swiGLUReference(doubles(gate), doubles(up)))
        let gateDifference = maxRelativeDifference(added(result[3], over: gateStart), finiteDifferences(at: doubles(gate)) {
            weightedSum(swiGLUReference($0, doubles(up)), doubles(r))
        })
        let upDifference = maxRelativeDifference(added(result[4], over: upStart), finiteDifferences(at: doubles(up)) {
            weightedSum(swiGLUReference(doubles(gate), $0), doubles(r))
        })
        print("SwiGLU forward max rel diff", forwardDifference, "backward gate", gateDifference, "up", upDifference)
        #expect(forwardDifference <= 1e-5)
        #expect(gateDifference <= 1e-3)
        #expect(upDifference <= 1e-3)
    }

    @Test func residualForwardAndBackward() {
        let a = randomValues(count, seed: 71), b = randomValues(count, seed: 72), r = randomValues(count, seed: 73)
        let (aStart, bStart) = (randomValues(count, seed: 74), randomValues(count, seed: 75))
        let result = withBuffers([a, b, [Float](repeating: 0, count: count), aStart, bStart, r]) { p in
            Residual.forward(output: p[2], a: p[0], b: p[1], count: count)
            Residual.backward(aGradient: p[3], bGradient: p[4], outputGradient: p[5], count: count)
        }
        let forwardDifference = maxRelativeDifference(result[2], zip(doubles(a), doubles(b)).map { $0 + $1 })
        let aDifference = maxRelativeDifference(added(result[3], over: aStart), finiteDifferences(at: doubles(a)) {
            weightedSum(zip($0, doubles(b)).map { $0 + $1 }, doubles(r))
        })
        let bDifference = maxRelativeDifference(added(result[4], over: bStart), finiteDifferences(at: doubles(b)) {
            weightedSum(zip(doubles(a), $0).map { $0 + $1 }, doubles(r))
        })
        print("Residual forward max rel diff", forwardDifference, "backward a", aDifference, "b", bDifference)
        #expect(forwardDifference <= 1e-5)
        #expect(aDifference <= 1e-3 && bDifference <= 1e-3)
    }

    @Test func elementwiseKernelsAreThreadCountIndependent() {
        let n = 70_000
        let gate = randomValues(n, seed: 81, scale: 3), up = randomValues(n, seed: 82), r = randomValues(n, seed: 83)
        let results = [1, 3].map { threadCount in
            withBuffers([gate, up, [Float](repeating: 0, count: n), [Float](repeating: 0, count: n),
                         [Float](repeating: 0, count: n), r]) { p in
                let threads = KernelThreads(count: threadCount)
                SwiGLU.forward(output: p[2], gate: p[0], up: p[1], count: n, threads: threads)
                SwiGLU.backward(gateGradient: p[3], upGradient: p[4], outputGradient: p[5], gate: p[0], up: p[1],
                                count: n, threads: threads)
            }
        }
        expectSameBits(results[1], results[0], "threads 3 vs 1")
    }
}

@Suite struct AdamWTests {
    @Test(arguments: [1, 7])
    func updateMatchesTorchFormula(step: Int) {
        let n = 45
        let settings = AdamW.Settings(learningRate: 1e-2, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let parameters = randomValues(n, seed: 91), gradients = randomValues(n, seed: 92, scale: 0.1)
        let first = randomValues(n, seed: 93, scale: 0.01)
        let second = randomValues(n, seed: 94, scale: 0.001).map { $0 * $0 }
        let expected = adamWReference(parameters: doubles(parameters), gradients: doubles(gradients),
                                      first: doubles(first), second: doubles(second), step: step,
                                      learningRate: 1e-2, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let result = withBuffers([parameters, first, second, gradients]) { p in
            AdamW.update(parameters: p[0], firstMoments: p[1], secondMoments: p[2], gradients: p[3],
                         count: n, step: step, settings: settings)
        }
        let differences = [maxRelativeDifference(result[0], expected.parameters),
                           maxRelativeDifference(result[1], expected.first),
                           maxRelativeDifference(result[2], expected.second)]
        // The update itself (p_new − p) is what must be accurate, not just p.
        let updateDifference = maxRelativeDifference(zip(result[0], parameters).map { $0 - $1 },
                                                     zip(expected.parameters, doubles(parameters)).map { $0 - $1 })
        print("AdamW step \(step) max rel diff parameters/moments", differences, "update", updateDifference)
        #expect(differences.allSatisfy { $0 <= 1e-5 })
        #expect(updateDifference <= 1e-4)
    }
}
