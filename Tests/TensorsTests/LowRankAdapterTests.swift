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
}
