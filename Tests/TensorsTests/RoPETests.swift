import Foundation
import TensorComparison
import Testing
import Tensors

@Suite struct RoPETests {
    let tokens = 6, heads = 3, headDimension = 40
    // Packed, offset, out-of-order positions: the kernel must use each token's own.
    let positions: [Int32] = [0, 5, 17, 3, 60, 2]
    // A small original context so all three llama3 bands (kept, interpolated, stretched) occur.
    let llama3 = RoPEScaling(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositionEmbeddings: 64)
    var llama3Reference: (factor: Double, low: Double, high: Double, original: Double) { (8, 1, 4, 64) }

    /// Largest elementwise relative error: every frequency matters, not just the largest.
    func elementwiseRelativeDifference(_ actual: [Float], _ expected: [Double]) -> Double {
        zip(actual, expected).map { abs(Double($0) - $1) / abs($1) }.max() ?? 0
    }

    @Test func inverseFrequenciesFollowTransformers() {
        for (theta, dimension, scaled) in [(Float(10_000), 64, false), (500_000, 128, true), (10_000, 40, true)] {
            let original = scaled ? (dimension == 128 ? 8192 : 64) : 0
            let scaling = scaled ? RoPEScaling(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4,
                                               originalMaxPositionEmbeddings: original) : nil
            let table = RoPETable(headDimension: dimension, positionCount: 4, theta: theta, scaling: scaling)
            let expected = ropeInverseFrequenciesReference(
                headDimension: dimension, theta: Double(theta), llama3: scaled ? (8, 1, 4, Double(original)) : nil)
            let difference = elementwiseRelativeDifference(table.inverseFrequencies, expected)
            print("RoPE inverse frequencies theta \(theta) d \(dimension) llama3 \(scaled) max elementwise rel diff", difference)
            #expect(difference <= 1e-5)
            if scaled {
                let plain = ropeInverseFrequenciesReference(headDimension: dimension, theta: Double(theta), llama3: nil)
                let bands = Set(zip(expected, plain).map { scaledValue, plainValue in
                    scaledValue == plainValue ? "kept" : abs(scaledValue - plainValue / 8) < 1e-15 ? "stretched" : "smoothed"
                })
                #expect(bands == ["kept", "smoothed", "stretched"])
            }
        }
    }

    @Test(arguments: [false, true])
    func forwardMatchesReferenceAndWorksInPlace(scaled: Bool) {
        let table = RoPETable(headDimension: headDimension, positionCount: 64, theta: 10_000, scaling: scaled ? llama3 : nil)
        let frequencies = ropeInverseFrequenciesReference(headDimension: headDimension, theta: 10_000,
                                                          llama3: scaled ? llama3Reference : nil)
        let input = randomValues(tokens * heads * headDimension, seed: scaled ? 101 : 102)
        let expected = ropeReference(doubles(input), positions: positions, inverseFrequencies: frequencies,
                                     tokens: tokens, heads: heads, headDimension: headDimension)
        let result = withBuffers([input, [Float](repeating: 0, count: input.count), input]) { p in
            RoPE.forward(output: p[1], input: p[0], positions: positions, table: table,
                         tokenCount: tokens, headCount: heads, headDimension: headDimension)
            RoPE.forward(output: p[2], input: p[2], positions: positions, table: table,
                         tokenCount: tokens, headCount: heads, headDimension: headDimension)
        }
        let difference = maxRelativeDifference(result[1], expected)
        print("RoPE forward (llama3 \(scaled)) max rel diff", difference)
        #expect(difference <= 1e-5)
        expectSameBits(result[2], result[1], "in place vs out of place")
    }

    @Test(arguments: [false, true])
    func backwardMatchesFiniteDifferences(scaled: Bool) {
        let table = RoPETable(headDimension: headDimension, positionCount: 64, theta: 10_000, scaling: scaled ? llama3 : nil)
        let frequencies = ropeInverseFrequenciesReference(headDimension: headDimension, theta: 10_000,
                                                          llama3: scaled ? llama3Reference : nil)
        let input = randomValues(tokens * heads * headDimension, seed: 103)
        let r = randomValues(input.count, seed: 104), start = randomValues(input.count, seed: 105)
        let results = [1, 2].map { count in
            withBuffers([start, r]) { p in
                RoPE.backward(inputGradient: p[0], outputGradient: p[1], positions: positions, table: table,
                              tokenCount: tokens, headCount: heads, headDimension: headDimension,
                              threads: KernelThreads(count: count))
            }[0]
        }
        let expected = finiteDifferences(at: doubles(input)) {
            weightedSum(ropeReference($0, positions: positions, inverseFrequencies: frequencies,
                                      tokens: tokens, heads: heads, headDimension: headDimension), doubles(r))
        }
        let difference = maxRelativeDifference(added(results[0], over: start), expected)
        print("RoPE backward (llama3 \(scaled)) max rel diff", difference)
        #expect(difference <= 1e-3)
        expectSameBits(results[1], results[0], "threads 2 vs 1")
    }
}
