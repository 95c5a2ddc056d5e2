import Tensors
import Testing

/// `LowRankAdapter`'s fused kernels against a Double reference of the products they replace,
/// and the same bits on any thread count.
@Suite struct LowRankAdapterTests {
    init() { useSingleThreadedBLAS() }

    /// intermediateGradient = s·g·B and bGradient += s·gᵀ·u in one pass over g: ranks of one
    /// 16-lane chunk, of an 8-lane one and of both, row counts that leave ragged groups of four
    /// and ragged token blocks.
    @Test(arguments: [(rows: 7, outputs: 5, rank: 8), (rows: 530, outputs: 33, rank: 16), (rows: 301, outputs: 19, rank: 24)])
    func outputGradientProductsMatchTheirReference(rows: Int, outputs: Int, rank: Int) {
        let scaling: Float = 1.75
        let g = randomValues(rows * outputs, seed: 1), b = randomValues(outputs * rank, seed: 2)
        let u = randomValues(rows * rank, seed: 3), initial = randomValues(outputs * rank, seed: 4)
        var expectedIntermediate = [Double](repeating: 0, count: rows * rank)
        var expectedB = doubles(initial)
        for row in 0..<rows {
            for output in 0..<outputs {
                let x = Double(g[row * outputs + output])
                for k in 0..<rank {
                    expectedIntermediate[row * rank + k] += Double(scaling) * x * Double(b[output * rank + k])
                    expectedB[output * rank + k] += Double(scaling) * x * Double(u[row * rank + k])
                }
            }
        }
        var results: [[[Float]]] = []
        for threads in [1, 2, 3] {
            results.append(withBuffers([[Float](repeating: .nan, count: rows * rank), initial, g, u, b]) { p in
                LowRankAdapter.outputGradientProducts(intermediateGradient: p[0], bGradient: p[1], outputGradient: p[2],
                                                      intermediate: p[3], b: p[4], scaling: scaling, rowCount: rows,
                                                      outputSize: outputs, rank: rank, threads: KernelThreads(count: threads))
            })
        }
        #expect(maxRelativeDifference(results[0][0], expectedIntermediate) < 1e-5)
        #expect(maxRelativeDifference(results[0][1], expectedB) < 1e-5)
        for other in results.dropFirst() {
            #expect(other[0] == results[0][0] && other[1] == results[0][1], "the bits depend on the thread count")
        }
    }

    /// bias + scaling·(x·Aᵀ)·Bᵀ written, then x·Wᵀ added by the accumulating base product: a
    /// LoRA projection's output and saved intermediate, against a Double reference, with and
    /// without a bias, for output widths with and without a ragged end and row counts with and
    /// without a ragged group of four; the same bits on any thread count.
    @Test(arguments: [(rows: 7, inputs: 9, outputs: 5, rank: 3, bias: true), (rows: 37, inputs: 20, outputs: 48, rank: 16, bias: false),
                      (rows: 66, inputs: 33, outputs: 35, rank: 8, bias: true)])
    func forwardBeforeBaseMatchesItsReference(rows: Int, inputs: Int, outputs: Int, rank: Int, bias: Bool) {
        let scaling: Float = 0.625
        let x = randomValues(rows * inputs, seed: 5), w = randomValues(outputs * inputs, seed: 6)
        let a = randomValues(rank * inputs, seed: 7), b = randomValues(outputs * rank, seed: 8)
        let biasValues = bias ? randomValues(outputs, seed: 9) : [Float](repeating: 0, count: outputs)
        var expectedIntermediate = [Double](repeating: 0, count: rows * rank)
        var expected = [Double](repeating: 0, count: rows * outputs)
        for row in 0..<rows {
            for k in 0..<rank {
                for column in 0..<inputs { expectedIntermediate[row * rank + k] += Double(x[row * inputs + column]) * Double(a[k * inputs + column]) }
            }
            for output in 0..<outputs {
                var sum = Double(biasValues[output])
                for column in 0..<inputs { sum += Double(x[row * inputs + column]) * Double(w[output * inputs + column]) }
                for k in 0..<rank { sum += Double(scaling) * expectedIntermediate[row * rank + k] * Double(b[output * rank + k]) }
                expected[row * outputs + output] = sum
            }
        }
        var results: [[[Float]]] = []
        for threads in [1, 2, 3] {
            results.append(withBuffers([[Float](repeating: .nan, count: rows * outputs), [Float](repeating: .nan, count: rows * rank),
                                        x, a, b, w, biasValues]) { p in
                let kernelThreads = KernelThreads(count: threads)
                LowRankAdapter.forwardBeforeBase(output: p[0], intermediate: p[1], input: p[2], a: p[3], b: p[4], bias: bias ? p[6] : nil,
                                                 scaling: scaling, rowCount: rows, inputSize: inputs, outputSize: outputs, rank: rank,
                                                 threads: kernelThreads)
                Matmul.forward(output: p[0], input: p[2], weight: p[5], bias: nil, rowCount: rows, inputSize: inputs, outputSize: outputs,
                               accumulate: true, threads: kernelThreads)
            })
        }
        #expect(maxRelativeDifference(results[0][0], expected) < 1e-5)
        #expect(maxRelativeDifference(results[0][1], expectedIntermediate) < 1e-5)
        for other in results.dropFirst() {
            #expect(other[0] == results[0][0] && other[1] == results[0][1], "the bits depend on the thread count")
        }
    }
}
