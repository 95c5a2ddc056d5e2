import Tensors
import Testing
import Training

@Suite struct MinimumSlackPackingTests {
    /// Every sample in exactly one row, no row over its length.
    func expectValid(_ rows: [[Int]], lengths: [Int], sequenceLength: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(rows.flatMap { $0 }.sorted() == Array(lengths.indices), "each sample once", sourceLocation: sourceLocation)
        #expect(rows.allSatisfy { !$0.isEmpty && $0.reduce(0) { $0 + lengths[$1] } <= sequenceLength }, sourceLocation: sourceLocation)
    }

    /// Where best fit decreasing leaves rooms no later sample fits, minimum slack finds the samples
    /// that fill them together.
    @Test func fillsRowsThatBestFitLeavesOpen() {
        let lengths = [4, 4, 3, 3, 3, 3]
        let slack = MinimumSlackPacking.rows(lengths: lengths, sequenceLength: 10)
        let bestFit = SFTPackedRows.bestFitDecreasing(lengths: lengths, sequenceLength: 10)
        #expect(slack.map { $0.map { lengths[$0] } } == [[4, 4], [3, 3, 3], [3]] || slack.map { $0.map { lengths[$0] } } == [[4, 3, 3], [4, 3, 3]],
                "\(slack)")
        #expect(slack.count == 2 && bestFit.count == 3, "minimum slack \(slack), best fit \(bestFit)")
        #expect(slack == [[0, 2, 3], [1, 4, 5]], "equal lengths in sample order")
    }

    /// On sets like the shipped instruction set's (lengths 54–179, rows of 256) and on wider
    /// ones, both stay near the bound, and `auto` takes the one with fewer rows.
    @Test(arguments: [(54, 179, 256, 3000), (1, 512, 512, 5000), (100, 900, 1024, 2000), (200, 4096, 4096, 3000)])
    func autoTakesTheFewerRows(shortest: Int, longest: Int, sequenceLength: Int, count: Int) {
        var generator = SplitMix64(seed: UInt64(shortest * 7919 + longest))
        let lengths = (0..<count).map { _ in shortest + Int(generator.next() % UInt64(longest - shortest + 1)) }
        let slack = MinimumSlackPacking.rows(lengths: lengths, sequenceLength: sequenceLength)
        let bestFit = SFTPackedRows.bestFitDecreasing(lengths: lengths, sequenceLength: sequenceLength)
        expectValid(slack, lengths: lengths, sequenceLength: sequenceLength)
        let total = lengths.reduce(0, +), bound = (total + sequenceLength - 1) / sequenceLength
        print("packing \(count) lengths \(shortest)…\(longest) into \(sequenceLength): minimum slack \(slack.count) rows "
              + "(\(100 * total / (slack.count * sequenceLength))%), best fit decreasing \(bestFit.count), bound \(bound)")
        let chosen = SFTPacking.auto.rows(lengths: lengths, sequenceLength: sequenceLength)
        expectValid(chosen, lengths: lengths, sequenceLength: sequenceLength)
        #expect(chosen.count == min(slack.count, bestFit.count) && slack.count >= bound)
        #expect(Double(slack.count) <= 1.01 * Double(bestFit.count))
        #expect(MinimumSlackPacking.rows(lengths: lengths, sequenceLength: sequenceLength) == slack, "deterministic")
    }

    @Test func edgeCases() {
        #expect(MinimumSlackPacking.rows(lengths: [], sequenceLength: 8).isEmpty)
        #expect(MinimumSlackPacking.rows(lengths: [8, 8], sequenceLength: 8) == [[0], [1]])
        #expect(MinimumSlackPacking.rows(lengths: [1, 1, 1, 1], sequenceLength: 2) == [[0, 1], [2, 3]])
    }
}

