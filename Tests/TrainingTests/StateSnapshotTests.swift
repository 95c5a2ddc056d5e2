import TensorComparison
import Testing
import Parallel
import Tensors

@Suite struct StateSnapshotTests {
    /// Regions that an update covers in part, in whole, or not at all (and one update split at
    /// region boundaries of all three arrays) end up holding the values from before the update,
    /// and the pieced update equals one plain update bit for bit.
    @Test func regionsHoldTheStateBeforeTheUpdate() {
        let count = 3000
        func values(_ seed: UInt64, _ scale: Float) -> [Float] {
            var generator = SplitMix64(seed: seed, stream: 1)
            return (0..<count).map { _ in scale * (2 * generator.nextUniform() - 1) }
        }
        let original = [values(1, 1), values(2, 0.01), values(3, 0.001).map { $0 * $0 }]
        let gradients = values(4, 0.1)
        let arrays = original.map { Tensor(shape: [count], values: $0) }
        let destination = Tensor(shape: [count * 3])
        // kind → (first element, count) of each region; laid out back to back in `destination`.
        let layout: [[(Int, Int)]] = [[(100, 200), (300, 50), (2900, 100)], [(120, 380)], [(0, 1000), (1000, 2000)]]
        var next = 0
        let regions = layout.enumerated().map { kind, list in
            list.map { start, length in
                defer { next += length }
                return StateSnapshot.Region(source: arrays[kind].pointer + start, count: length, destination: destination.pointer + next)
            }
        }
        let snapshot = StateSnapshot(parameters: regions[0], firstMoments: regions[1], secondMoments: regions[2])
        // The "step" updates elements 50..<2000 only: region (2900, 100) and part of (1000, 2000) stay as they were.
        let settings = AdamW.Settings(learningRate: 1e-2, weightDecay: 0.1)
        let updated = 50..<2000
        let pieces = snapshot.pieces(parameters: arrays[0].pointer + updated.lowerBound, firstMoments: arrays[1].pointer + updated.lowerBound,
                                     secondMoments: arrays[2].pointer + updated.lowerBound, count: updated.count)
        #expect(pieces.map(\.elements.lowerBound) == [0, 50, 70, 250, 300, 450, 950])
        #expect(pieces.first?.snapshot?.parameters == nil && pieces.first?.snapshot?.secondMoments != nil)
        gradients.withUnsafeBufferPointer { g in
            for piece in pieces {
                let offset = updated.lowerBound + piece.elements.lowerBound
                AdamW.update(parameters: arrays[0].pointer + offset, firstMoments: arrays[1].pointer + offset,
                             secondMoments: arrays[2].pointer + offset, gradients: g.baseAddress! + offset,
                             count: piece.elements.count, step: 2, settings: settings, snapshot: piece.snapshot)
            }
        }
        #expect(!snapshot.isComplete)
        snapshot.complete()
        #expect(snapshot.isComplete)
        let saved = destination.values
        var expected: [Float] = []
        for (kind, list) in layout.enumerated() {
            for (start, length) in list { expected += original[kind][start..<start + length] }
        }
        let mismatches = zip(saved, expected).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
        #expect(saved.count >= expected.count && mismatches.isEmpty,
                "\(mismatches.count) saved values differ from the state before the update, first at \(mismatches.first ?? -1)")
        // The same update in one call.
        let plain = original.map { Tensor(shape: [count], values: $0) }
        gradients.withUnsafeBufferPointer { g in
            AdamW.update(parameters: plain[0].pointer + 50, firstMoments: plain[1].pointer + 50, secondMoments: plain[2].pointer + 50,
                         gradients: g.baseAddress! + 50, count: updated.count, step: 2, settings: settings)
        }
        expectSameBits(arrays.map(\.values), plain.map(\.values), "update in pieces vs in one call")
        #expect(arrays[0].values != original[0])
    }
}
