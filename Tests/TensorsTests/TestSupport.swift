import Foundation
import Tensors
import TensorComparison

/// OpenBLAS must run one thread (see KernelThreads); set once for the whole test process.
let singleThreadedBLAS: Void = { BLASLibrary.threadCount = 1 }()

func useSingleThreadedBLAS() {
    _ = singleThreadedBLAS
}

/// Uniform values in [-scale, scale) from a seeded stream; the seed is mixed from the test's
/// name so different arrays in one test differ.
func randomValues(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var generator = SplitMix64(seed: seed, stream: UInt64(count))
    return (0..<count).map { _ in scale * (2 * generator.nextUniform() - 1) }
}

func doubles(_ values: [Float]) -> [Double] { values.map(Double.init) }

/// max|a − b| / max|b|: the largest error relative to the reference's scale, so near-zero
/// reference entries do not blow up the ratio (`TensorDifference`).
func maxRelativeDifference(_ actual: [Float], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count, "\(actual.count) values vs \(expected.count) expected")
    return TensorDifference(actual, expected).relativeDifference
}

func maxRelativeDifference(_ actual: [Float], _ expected: [Float]) -> Double {
    precondition(actual.count == expected.count, "\(actual.count) values vs \(expected.count) expected")
    return TensorDifference(actual, expected).relativeDifference
}

/// Central differences of `loss` with respect to every element of `point`.
func finiteDifferences(at point: [Double], step: Double = 1e-4, _ loss: ([Double]) -> Double) -> [Double] {
    var shifted = point
    return (0..<point.count).map { index in
        shifted[index] = point[index] + step
        let plus = loss(shifted)
        shifted[index] = point[index] - step
        let minus = loss(shifted)
        shifted[index] = point[index]
        return (plus - minus) / (2 * step)
    }
}

/// Σ output · weights: the scalar loss whose gradient with respect to `output` is `weights`.
func weightedSum(_ output: [Double], _ weights: [Double]) -> Double {
    zip(output, weights).reduce(0) { $0 + $1.0 * $1.1 }
}

/// Runs `body` with pointers to copies of the arrays and returns the copies afterwards.
func withBuffers(_ arrays: [[Float]], _ body: ([UnsafeMutablePointer<Float>]) -> Void) -> [[Float]] {
    let tensors = arrays.map { Tensor(shape: [$0.count], values: $0) }
    body(tensors.map(\.pointer))
    return tensors.map(\.values)
}

/// The gradient a backward kernel added to a buffer that started at `initial`.
func added(_ final: [Float], over initial: [Float]) -> [Float] {
    zip(final, initial).map { $0 - $1 }
}
