import Model
import Parallel
import Runtime
import Tensors

/// A model that only runs forward, on the same mesh and sharding as a trainer's (TP, PP, DP,
/// ZeRO-3 parameter shards): a DPO reference, a reward scorer, an evaluator. It holds no
/// gradients and no optimizer state, and its activations are sized for inference (two
/// residual-stream slices, one layer's saved activations, no gradient scratch).
///
/// Batches of variable-length sequences go in packed: several sequences per row, positions
/// restarting at each (`MicroBatch.sequenceSpans`), attention masked per sequence, so no
/// padding is computed.
public final class ForwardModel {
    public let parallelModel: ParallelModel

    /// - Parameters:
    ///   - microBatchSize, sequenceLength: rows and tokens per row of every micro-batch.
    ///   - seed: the initialization's seed (`loadParameters` usually replaces it).
    ///
    /// Under pipeline parallelism the micro-batches go through the stages one after another
    /// (one activation arena per stage chunk, no schedule overlapping them).
    public init(config: LlamaConfig, microBatchSize: Int, sequenceLength: Int,
                parallel: ParallelSection, mesh: DeviceMesh, threads: KernelThreads, seed: UInt64 = 0) throws {
        let shape = ParallelModel.Shape(microBatchSize: microBatchSize, sequenceLength: sequenceLength,
                                        microBatchCount: mesh.pipeline.size, documentMasking: true)
        parallelModel = try ParallelModel(config: config, shape: shape, parallel: parallel, mesh: mesh, threads: threads,
                                          trainable: false, seed: seed)
    }

    /// Loads the parameters of a checkpoint (any mesh saved it).
    public func loadParameters(from path: String, log: Log) throws {
        try parallelModel.loadParameters(from: path, option: "checkpoint", log: log)
    }

    /// Σ log p(target) and counted targets of every sequence of every micro-batch
    /// (`ParallelModel.sequenceLogProbabilities`).
    public func sequenceLogProbabilities(_ batches: [MicroBatch]) throws -> [[SequenceLogProbability]] {
        try parallelModel.sequenceLogProbabilities(batches)
    }
}
