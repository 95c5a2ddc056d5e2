import DataPipeline
import Runtime

/// This rank's micro-batches of each step, drawn from packed samples by the global-index
/// sampler, so the data a step sees does not depend on how many ranks share it.
public final class SampledBatches: BatchSource {
    public let samples: PackedSamples
    public let sampler: DistributedSampler
    public let rank: Int

    public init(samples: PackedSamples, sampler: DistributedSampler, rank: Int) {
        self.samples = samples
        self.sampler = sampler
        self.rank = rank
    }

    /// Opens `path` for training or evaluation with the run's sequence length and batch shape.
    public static func open(_ path: String, data: DataSection, train: TrainSection, dataParallelDegree: Int, rank: Int,
                            shuffle: Bool) throws -> SampledBatches {
        let dataset = try TokenDataset.open(path, binType: data.binDtype, eosId: data.eosId.map { Int32($0) })
        let samples = try PackedSamples(dataset: dataset, sequenceLength: train.seqLen, boundaryTargets: data.boundaryTargets)
        let sampler = try DistributedSampler(sampleCount: samples.sampleCount, globalBatchSize: train.globalBatchSize,
                                             microBatchSize: train.microBatchSize, dataParallelDegree: dataParallelDegree,
                                             seed: UInt64(train.seed), shuffle: shuffle)
        return SampledBatches(samples: samples, sampler: sampler, rank: rank)
    }

    public func microBatches(step: Int) throws -> [MicroBatch] {
        try sampler.localMicroBatches(at: sampler.position(ofStep: step), rank: rank).enumerated().map { index, indices in
            let batch = try samples.batch(indices)
            return MicroBatch(tokens: batch.inputs, targets: batch.targets, positions: batch.positions,
                              sequenceLength: samples.sequenceLength,
                              firstRow: rank * sampler.localBatchSize + index * sampler.microBatchSize)
        }
    }
}
