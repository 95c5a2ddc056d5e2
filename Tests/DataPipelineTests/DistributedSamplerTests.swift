import Foundation
import DataPipeline
import Testing

@Suite struct DistributedSamplerTests {
    @Test func permutationIsABijectionAndSeeded() {
        for count in [1, 2, 3, 5, 16, 17, 100, 1000, 4097] {
            let permutation = SamplePermutation(count: count, seed: 42, epoch: 0)
            let values = (0..<count).map { permutation[$0] }
            #expect(Set(values) == Set(0..<count), "count \(count)")
        }
        let a = (0..<1000).map { SamplePermutation(count: 1000, seed: 42, epoch: 0)[$0] }
        #expect(a == (0..<1000).map { SamplePermutation(count: 1000, seed: 42, epoch: 0)[$0] })
        #expect(a != (0..<1000).map { SamplePermutation(count: 1000, seed: 43, epoch: 0)[$0] })
        #expect(a != (0..<1000).map { SamplePermutation(count: 1000, seed: 42, epoch: 1)[$0] })
        #expect(a != Array(0..<1000))
        // Pinned values: the order must not change between versions (runs resume across them).
        #expect(Array(a.prefix(8)) == PinnedPermutation.first8)
    }

    @Test func rankSlicesCoverTheGlobalBatch() throws {
        let sampleCount = 37
        let one = try DistributedSampler(sampleCount: sampleCount, globalBatchSize: 8, microBatchSize: 1,
                                         dataParallelDegree: 1, seed: 7)
        for degree in [1, 2, 4] {
            let sampler = try DistributedSampler(sampleCount: sampleCount, globalBatchSize: 8, microBatchSize: 2,
                                                 dataParallelDegree: degree, seed: 7)
            #expect(sampler.microBatchesPerStep == 4 / degree)
            for step in 0..<20 {
                let position = sampler.position(ofStep: step)
                let slices = (0..<degree).map { sampler.localBatch(at: position, rank: $0) }
                #expect(slices.flatMap { $0 } == one.globalBatch(at: one.position(ofStep: step)), "dp \(degree) step \(step)")
                let micro = (0..<degree).flatMap { sampler.localMicroBatches(at: position, rank: $0) }
                #expect(micro.allSatisfy { $0.count == 2 } && micro.flatMap { $0 } == slices.flatMap { $0 })
            }
        }
    }

    @Test func epochsVisitEverySampleOnceAcrossBatchBoundaries() throws {
        // 37 samples, batches of 8: batch 4 spans the end of epoch 0 and the start of epoch 1.
        let sampler = try DistributedSampler(sampleCount: 37, globalBatchSize: 8, microBatchSize: 4,
                                             dataParallelDegree: 2, seed: 11)
        let stream = (0..<15).flatMap { step in
            (0..<2).flatMap { sampler.localBatch(at: sampler.position(ofStep: step), rank: $0) }
        }
        #expect(Set(stream[0..<37]).count == 37)     // epoch 0: every sample once
        #expect(Set(stream[37..<74]).count == 37)    // epoch 1: every sample once, in another order
        #expect(Set(stream[74..<111]).count == 37)
        #expect(Array(stream[0..<37]) != Array(stream[37..<74]))
        #expect(sampler.position(ofStep: 5) == DataPosition(epoch: 1, offset: 3))
        #expect(sampler.position(after: DataPosition(epoch: 1, offset: 3), steps: 2) == DataPosition(epoch: 1, offset: 19))
    }

    @Test func resumingOnAnotherDegreeContinuesExactly() throws {
        let sampleCount = 50
        let reference = try DistributedSampler(sampleCount: sampleCount, globalBatchSize: 12, microBatchSize: 3,
                                               dataParallelDegree: 1, seed: 99)
        let straight = (0..<12).flatMap { reference.globalBatch(at: reference.position(ofStep: $0)) }
        for (before, after) in [(1, 2), (2, 4), (4, 1), (2, 1)] {
            let first = try DistributedSampler(sampleCount: sampleCount, globalBatchSize: 12, microBatchSize: 3,
                                               dataParallelDegree: before, seed: 99)
            let second = try DistributedSampler(sampleCount: sampleCount, globalBatchSize: 12, microBatchSize: 3,
                                                dataParallelDegree: after, seed: 99)
            var position = DataPosition.start
            var seen = [Int]()
            for _ in 0..<5 {   // run 5 steps on `before` ranks, "checkpoint" the position …
                seen += (0..<before).flatMap { first.localBatch(at: position, rank: $0) }
                position = first.position(after: position)
            }
            for _ in 5..<12 {  // … and resume on `after` ranks from the stored position alone
                seen += (0..<after).flatMap { second.localBatch(at: position, rank: $0) }
                position = second.position(after: position)
            }
            #expect(seen == straight, "dp \(before) → \(after)")
        }
    }

    @Test func unshuffledOrderIsSequential() throws {
        let sampler = try DistributedSampler(sampleCount: 10, globalBatchSize: 4, microBatchSize: 2,
                                             dataParallelDegree: 2, seed: 1, shuffle: false)
        #expect(sampler.globalBatch(at: sampler.position(ofStep: 2)) == [8, 9, 0, 1])
        #expect(sampler.localBatch(at: .start, rank: 1) == [2, 3])
    }

    @Test func batchArithmeticIsValidated() {
        expectDataError("global batch size 12 must be divisible by data parallel degree 4 × micro batch size 2 = 8") {
            _ = try DistributedSampler(sampleCount: 100, globalBatchSize: 12, microBatchSize: 2, dataParallelDegree: 4, seed: 0)
        }
        expectDataError("micro batch size must be at least 1, got 0") {
            _ = try DistributedSampler(sampleCount: 100, globalBatchSize: 12, microBatchSize: 0, dataParallelDegree: 4, seed: 0)
        }
        expectDataError("the data holds no samples") {
            _ = try DistributedSampler(sampleCount: 0, globalBatchSize: 4, microBatchSize: 1, dataParallelDegree: 1, seed: 0)
        }
    }

    @Test func positionCountsSamplesAndRoundTripsThroughJSON() throws {
        let position = DataPosition(epoch: 3, offset: 17)
        #expect(position.consumedSamples(sampleCount: 20) == 77)
        #expect(DataPosition(consumedSamples: 77, sampleCount: 20) == position)
        let json = try JSONEncoder().encode(position)
        #expect(String(decoding: json, as: UTF8.self).contains("\"offset\":17"))
        #expect(try JSONDecoder().decode(DataPosition.self, from: json) == position)
    }
}

/// The first 8 entries of SamplePermutation(count: 1000, seed: 42, epoch: 0), pinned.
enum PinnedPermutation {
    static let first8: [Int] = [254, 874, 941, 789, 803, 927, 151, 643]
}
