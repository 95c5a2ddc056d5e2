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

    @Test(arguments: [(false, false), (true, true), (false, true)])
    func threadedMultiplySplitsRowsOrColumnsWithTheSameResult(transposeA: Bool, transposeB: Bool) {
        // Wide enough to be split: more columns than rows for one case, more rows for the other.
        for (m, n, k) in [(150, 37, 90), (33, 170, 70)] {
            let a = randomValues(m * k, seed: UInt64(m)), b = randomValues(k * n, seed: UInt64(n))
            let expected = gemmReference([Double](repeating: 0, count: m * n), ldc: n,
                                         doubles(a), lda: transposeA ? m : k, transposeA: transposeA,
                                         doubles(b), ldb: transposeB ? k : n, transposeB: transposeB,
                                         m: m, n: n, k: k, alpha: 1, beta: 0)
            let results = [1, 2, 3].map { threadCount in
                withBuffers([a, b, [Float](repeating: 0, count: m * n)]) { p in
                    BLAS.multiply(output: p[2], a: p[0], aTranspose: transposeA ? .transposed : .none,
                                  b: p[1], bTranspose: transposeB ? .transposed : .none,
                                  rowCount: m, columnCount: n, innerCount: k,
                                  threads: KernelThreads(count: threadCount))
                }[2]
            }
            let difference = maxRelativeDifference(results[0], expected)
            let threadDifference = max(maxRelativeDifference(results[1], results[0]),
                                       maxRelativeDifference(results[2], results[0]))
            print("BLAS.multiply \(m)×\(k)·\(k)×\(n) max rel diff", difference,
                  "threads 2,3 vs 1 max rel diff", threadDifference)
            #expect(difference <= 1e-5)
            #expect(threadDifference <= 1e-6)
        }
    }

    @Test func emptyInnerDimensionOnlyScalesTheOutput() {
        let c = randomValues(12, seed: 4)
        let result = withBuffers([[1], [1], c]) { p in
            BLAS.multiply(output: p[2], a: p[0], b: p[1], rowCount: 3, columnCount: 4, innerCount: 0, beta: 0.5)
        }[2]
        #expect(result == c.map { $0 * 0.5 })
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
        let (rows, inputSize, outputSize) = (96, 80, 72)
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
        for index in 0..<3 {
            let difference = maxRelativeDifference(results[1][index], results[0][index])
            print("Matmul backward gradient \(index) threads 3 vs 1 max rel diff", difference)
            #expect(difference <= 1e-6)
        }
        #expect(results[1][2] == results[0][2])
    }
}
