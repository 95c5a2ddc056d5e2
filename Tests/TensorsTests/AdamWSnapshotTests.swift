import TensorComparison
import Testing
@testable import Tensors

@Suite struct AdamWSnapshotTests {
    /// The copy-before-write variant updates exactly as the plain kernel does and leaves the old
    /// values of each array it names in the snapshot (nil arrays untouched), over several threads
    /// and a count that is not a multiple of the vector width or the copy piece.
    @Test(arguments: [1, 16, 4096 * 9 + 37])
    func snapshotHoldsOldValuesAndUpdateIsUnchanged(count: Int) {
        let settings = AdamW.Settings(learningRate: 1e-2, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        let parameters = randomValues(count, seed: 11), gradients = randomValues(count, seed: 12, scale: 0.1)
        let first = randomValues(count, seed: 13, scale: 0.01), second = randomValues(count, seed: 14, scale: 0.001).map { $0 * $0 }
        let threads = KernelThreads(count: 2)
        let plain = withBuffers([parameters, first, second, gradients]) { p in
            AdamW.update(parameters: p[0], firstMoments: p[1], secondMoments: p[2], gradients: p[3], count: count, step: 4,
                         settings: settings, gradientScale: 0.5, threads: threads)
        }
        let sentinel = [Float](repeating: -7, count: count)
        let copying = withBuffers([parameters, first, second, gradients, sentinel, sentinel, sentinel]) { p in
            AdamW.update(parameters: p[0], firstMoments: p[1], secondMoments: p[2], gradients: p[3], count: count, step: 4,
                         settings: settings, gradientScale: 0.5,
                         snapshot: AdamW.Snapshot(parameters: p[4], firstMoments: nil, secondMoments: p[6]), threads: threads)
        }
        expectSameBits(Array(copying[0..<3]), Array(plain[0..<3]), "update with snapshot vs plain")
        expectSameBits(copying[4], parameters, "parameter snapshot")
        expectSameBits(copying[5], sentinel, "first moments, not snapshotted")
        expectSameBits(copying[6], second, "second-moment snapshot")
        #expect(plain[0] != parameters)
    }
}
