import DataPipeline
import Foundation
import Testing

@Suite struct PackedSamplesTests {
    /// A .bin of `tokens` (uint16) opened with EOS 9.
    func dataset(_ tokens: [Int32]) throws -> TokenDataset {
        let path = join(scratchDirectory(), "tokens.bin")
        try write(littleEndianBytes(tokens.map { UInt16($0) }), to: path)
        return try TokenDataset.open(path, eosId: 9)
    }

    @Test func samplesAreNonOverlappingWindowsByGlobalIndex() throws {
        let tokens = (0..<23).map { Int32($0 % 9) }   // no EOS
        let samples = try PackedSamples(dataset: try dataset(tokens), sequenceLength: 5)
        #expect(samples.sampleCount == (23 - 1) / 5)
        for index in 0..<samples.sampleCount {
            #expect(try samples.tokens(ofSample: index) == Array(tokens[(index * 5)..<(index * 5 + 6)]))
        }
        let batch = try samples.batch([3, 0])
        #expect(batch.sampleCount == 2 && batch.sequenceLength == 5)
        #expect(batch.inputs == Array(tokens[15..<20]) + Array(tokens[0..<5]))
        #expect(batch.targets == Array(tokens[16..<21]) + Array(tokens[1..<6]))
        #expect(batch.positions == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    }

    @Test func positionsRestartAfterEOS() throws {
        //            doc A ends ↓      doc B ends ↓   doc C …
        let tokens: [Int32] = [1, 2, 3, 9, 4, 5, 9, 6, 7, 8, 1, 2, 9, 3]
        let samples = try PackedSamples(dataset: try dataset(tokens), sequenceLength: 6)
        let batch = try samples.batch([0, 1])
        // Sample 0: inputs 1 2 3 9 4 5 → EOS keeps its document's position, the next token is 0.
        #expect(Array(batch.positions[0..<6]) == [0, 1, 2, 3, 0, 1])
        // Sample 1 starts mid-document at position 0 (the window is the model's whole context).
        #expect(Array(batch.inputs[6..<12]) == [9, 6, 7, 8, 1, 2])
        #expect(Array(batch.positions[6..<12]) == [0, 0, 1, 2, 3, 4])
        // Kept by default: after EOS the model predicts the next document's first token.
        #expect(Array(batch.targets[0..<6]) == [2, 3, 9, 4, 5, 9])
        #expect(Array(batch.targets[6..<12]) == [6, 7, 8, 1, 2, 9])
    }

    @Test func boundaryTargetsCanBeIgnored() throws {
        let tokens: [Int32] = [1, 2, 3, 9, 4, 5, 9, 6, 7, 8, 1, 2, 9, 3]
        let samples = try PackedSamples(dataset: try dataset(tokens), sequenceLength: 6, boundaryTargets: .ignore)
        let batch = try samples.batch([0, 1])
        // Targets whose input is EOS (the first token of the next document) are masked; EOS as a
        // target (learning to end a document) is kept.
        #expect(Array(batch.targets[0..<6]) == [2, 3, 9, -100, 5, 9])
        #expect(Array(batch.targets[6..<12]) == [-100, 7, 8, 1, 2, 9])
        #expect(PackedSamples.ignoreIndex == -100)
    }

    @Test func positionsRunStraightWithoutAnEOS() throws {
        let path = join(scratchDirectory(), "tokens.bin")
        try write(littleEndianBytes([UInt16](repeating: 9, count: 9)), to: path)
        let samples = try PackedSamples(dataset: try TokenDataset.open(path), sequenceLength: 4)
        #expect(samples.eosId == nil)
        #expect(try samples.batch([1]).positions == [0, 1, 2, 3])
        expectDataError("\(path): masking targets at document boundaries needs the EOS id (give it for .bin/.npy data)") {
            _ = try PackedSamples(dataset: try TokenDataset.open(path), sequenceLength: 4, boundaryTargets: .ignore)
        }
    }

    @Test func sequenceLongerThanTheDataIsAnError() throws {
        let data = try dataset((0..<100).map { Int32($0 % 9) })
        #expect(try PackedSamples(dataset: data, sequenceLength: 99).sampleCount == 1)
        expectDataError("\(data.path): sequence length 100 needs at least 101 tokens, but the data holds 100") {
            _ = try PackedSamples(dataset: data, sequenceLength: 100)
        }
        expectDataError("sequence length must be at least 1, got 0") { _ = try PackedSamples(dataset: data, sequenceLength: 0) }
    }
}
