import TensorComparison
import Testing
import Tensors

@Suite struct BLASTests {
    init() { useSingleThreadedBLAS() }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func multiplyMatchesNaiveForEveryTranspose(transposeA: Bool, transposeB: Bool) {
        let m = 7, n = 19, k = 13
        // Strided storage: every leading dimension exceeds the stored column count.
        let lda = (transposeA ? m : k) + 3, ldb = (transposeB ? k : n) + 2, ldc = n + 5
        let a = randomValues((transposeA ? k : m) * lda, seed: 1)
        let b = randomValues((transposeB ? n : k) * ldb, seed: 2)
        let c = randomValues(m * ldc, seed: 3)
        let expected = gemmReference(doubles(c), ldc: ldc, doubles(a), lda: lda, transposeA: transposeA,
                                     doubles(b), ldb: ldb, transposeB: transposeB,
                                     m: m, n: n, k: k, alpha: 0.75, beta: -0.5)
        let result = withBuffers([a, b, c]) { p in
            BLAS.multiply(output: p[2], outputStride: ldc,
                          a: p[0], aStride: lda, aTranspose: transposeA ? .transposed : .none,
                          b: p[1], bStride: ldb, bTranspose: transposeB ? .transposed : .none,
                          rowCount: m, columnCount: n, innerCount: k, alpha: 0.75, beta: -0.5)
        }[2]
        let difference = maxRelativeDifference(result, expected)
        print("BLAS.multiply transposeA \(transposeA) transposeB \(transposeB) max rel diff", difference)
        #expect(difference <= 1e-5)
    }

    /// Products large enough to be cut into blocks — rows for one, columns for the other, the
    /// last block ragged — give the same bits on 1, 2, 3 and 4 threads, and match the naive
    /// product. Before the cut stopped depending on the thread count, OpenBLAS's AVX2 kernels
    /// (OPENBLAS_CORETYPE=Zen or Haswell) changed ~10 % of the outputs here.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func anyThreadCountGivesTheSameBits(transposeA: Bool, transposeB: Bool) {
        for (m, n, k) in [(2100, 64, 20), (40, 2090, 24), (4200, 160, 8)] {
            let blocks = ProductBlocks(rowCount: m, columnCount: n, innerCount: k)
            #expect(blocks.count >= 2, "\(m)×\(k)·\(k)×\(n) should be cut")
            let a = randomValues(m * k, seed: UInt64(m)), b = randomValues(k * n, seed: UInt64(n))
            let c = randomValues(m * n, seed: UInt64(k))
            let expected = gemmReference(doubles(c), ldc: n,
                                         doubles(a), lda: transposeA ? m : k, transposeA: transposeA,
                                         doubles(b), ldb: transposeB ? k : n, transposeB: transposeB,
                                         m: m, n: n, k: k, alpha: 1, beta: 0.5)
            let results = [1, 2, 3, 4].map { threadCount in
                withBuffers([a, b, c]) { p in
                    BLAS.multiply(output: p[2], a: p[0], aTranspose: transposeA ? .transposed : .none,
                                  b: p[1], bTranspose: transposeB ? .transposed : .none,
                                  rowCount: m, columnCount: n, innerCount: k, beta: 0.5,
                                  threads: KernelThreads(count: threadCount))
                }[2]
            }
            let label = "BLAS.multiply \(m)×\(k)·\(k)×\(n) (\(blocks.count) blocks of \(blocks.splitsRows ? "rows" : "columns"))"
            expectClose(results[0], expected, relativeTolerance: 1e-5, label)
            for (index, threadCount) in [2, 3, 4].enumerated() {
                expectSameBits(results[index + 1], results[0], "\(label), threads \(threadCount) vs 1")
            }
        }
    }

    @Test func blocksCoverTheOutputOnMultiplesOf16() {
        for (m, n, k) in [(2048, 768, 768), (768, 32000, 2048), (3000, 64, 70), (160, 64, 64), (17, 5000, 1000), (3, 4, 5)] {
            let blocks = ProductBlocks(rowCount: m, columnCount: n, innerCount: k)
            #expect(blocks.splitsRows == (m >= n) && blocks.length == max(m, n))
            #expect(blocks.count >= 1 && blocks.count <= ProductBlocks.maximumCount)
            var next = 0
            for index in 0..<blocks.count {
                let bounds = blocks.bounds(of: index)
                #expect(bounds.lowerBound == next && bounds.lowerBound % 16 == 0, "\(m)×\(n) block \(index): \(bounds)")
                #expect(blocks.count == 1 || bounds.count >= ProductBlocks.minimumLength - 16, "\(m)×\(n) block \(index): \(bounds)")
                #expect(blocks.count & (blocks.count - 1) == 0, "\(m)×\(n): \(blocks.count) blocks")
                next = bounds.upperBound
            }
            #expect(next == blocks.length)
        }
    }

    @Test func emptyInnerDimensionOnlyScalesTheOutput() {
        let c = randomValues(12, seed: 4)
        let result = withBuffers([[1], [1], c]) { p in
            BLAS.multiply(output: p[2], a: p[0], b: p[1], rowCount: 3, columnCount: 4, innerCount: 0, beta: 0.5)
        }[2]
        expectSameBits(result, c.map { $0 * 0.5 })
    }

    @Test func libraryReportsItsConfiguration() {
        #expect(!BLASLibrary.coreName.isEmpty)
        #expect(BLASLibrary.configuration.contains("OpenBLAS"))
        #expect(BLASLibrary.threadCount == 1)
        print("OpenBLAS core", BLASLibrary.coreName, "config", BLASLibrary.configuration)
    }
}

@Suite struct MatmulTests {
    init() { useSingleThreadedBLAS() }

    let rows = 5, inputSize = 7, outputSize = 6

    @Test func forwardMatchesReference() {
        let input = randomValues(rows * inputSize, seed: 11)
        let weight = randomValues(outputSize * inputSize, seed: 12)
        let bias = randomValues(outputSize, seed: 13)
        for useBias in [true, false] {
            let expected = matmulReference(doubles(input), doubles(weight), useBias ? doubles(bias) : nil,
                                           rows: rows, inputSize: inputSize, outputSize: outputSize)
            let output = withBuffers([input, weight, bias, [Float](repeating: 7, count: rows * outputSize)]) { p in
                Matmul.forward(output: p[3], input: p[0], weight: p[1], bias: useBias ? UnsafePointer(p[2]) : nil,
                               rowCount: rows, inputSize: inputSize, outputSize: outputSize)
            }[3]
            let difference = maxRelativeDifference(output, expected)
            print("Matmul forward (bias \(useBias)) max rel diff", difference)
            #expect(difference <= 1e-5)
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        let input = randomValues(rows * inputSize, seed: 21)
        let weight = randomValues(outputSize * inputSize, seed: 22)
        let bias = randomValues(outputSize, seed: 23)
        let r = randomValues(rows * outputSize, seed: 24)
        let (inputStart, weightStart, biasStart) = (randomValues(input.count, seed: 25),
                                                    randomValues(weight.count, seed: 26), randomValues(bias.count, seed: 27))
        let result = withBuffers([inputStart, weightStart, biasStart, r, input, weight]) { p in
            Matmul.backward(inputGradient: p[0], weightGradient: p[1], biasGradient: p[2], outputGradient: p[3],
                            input: p[4], weight: p[5], rowCount: rows, inputSize: inputSize, outputSize: outputSize)
        }
        let (x, w, b, weights) = (doubles(input), doubles(weight), doubles(bias), doubles(r))
        func loss(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            weightedSum(matmulReference(x, w, b, rows: rows, inputSize: inputSize, outputSize: outputSize), weights)
        }
        let checks = [
            ("input", added(result[0], over: inputStart), finiteDifferences(at: x) { loss($0, w, b) }),
            ("weight", added(result[1], over: weightStart), finiteDifferences(at: w) { loss(x, $0, b) }),
            ("bias", added(result[2], over: biasStart), finiteDifferences(at: b) { loss(x, w, $0) }),
        ]
        for (name, gradient, expected) in checks {
            let difference = maxRelativeDifference(gradient, expected)
            print("Matmul backward \(name) gradient max rel diff", difference)
            #expect(difference <= 1e-3)
        }
    }

    @Test func threadsGiveTheSameGradients() {
        // Large enough that both the input gradient (rows) and the weight gradient (columns) are
        // cut into blocks.
        let (rows, inputSize, outputSize) = (2100, 2050, 8)
        let input = randomValues(rows * inputSize, seed: 31), weight = randomValues(outputSize * inputSize, seed: 32)
        let r = randomValues(rows * outputSize, seed: 33)
        let results = [1, 3].map { count in
            withBuffers([[Float](repeating: 0, count: input.count), [Float](repeating: 0, count: weight.count),
                         [Float](repeating: 0, count: outputSize), r, input, weight]) { p in
                Matmul.backward(inputGradient: p[0], weightGradient: p[1], biasGradient: p[2], outputGradient: p[3],
                                input: p[4], weight: p[5], rowCount: rows, inputSize: inputSize,
                                outputSize: outputSize, threads: KernelThreads(count: count))
            }
        }
        for (index, name) in ["input", "weight", "bias"].enumerated() {
            expectSameBits(results[1][index], results[0][index], "Matmul backward \(name) gradient, threads 3 vs 1")
        }
    }
}
