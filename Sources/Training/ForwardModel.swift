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
    let pipelineCommunicator: Communicator

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
        pipelineCommunicator = mesh.pipeline
    }

    /// Loads the parameters of a checkpoint (any mesh saved it).
    public func loadParameters(from path: String, log: Log) throws {
        try parallelModel.loadParameters(from: path, option: "checkpoint", log: log)
    }

    /// Σ log p(target) and counted targets of every sequence of every micro-batch, in one call:
    /// `result[b][s]` is sequence s of `batches[b].sequenceSpans`. Completions are scored by
    /// giving their tokens targets and the prompt's −100. Every rank of a pipeline gets the
    /// figures (the last stage computes them); data-parallel ranks score their own batches.
    public func sequenceLogProbabilities(_ batches: [MicroBatch]) throws -> [[SequenceLogProbability]] {
        try Self.sequenceLogProbabilities(of: parallelModel, batches, pipeline: pipelineCommunicator)
    }

    /// `sequenceLogProbabilities` of any model on the mesh (a trainer's too).
    public static func sequenceLogProbabilities(of parallelModel: ParallelModel, _ batches: [MicroBatch],
                                                pipeline: Communicator) throws -> [[SequenceLogProbability]] {
        var sums: [Double] = [], counts: [Int64] = []
        try parallelModel.forward(batches) { model, batch, _ in
            for sequence in model.sequenceLogProbabilities(over: batch.sequenceSpans) {
                sums.append(sequence.sum)
                counts.append(Int64(sequence.count))
            }
        }
        let spanCounts = batches.map { $0.sequenceSpans.count }
        let total = spanCounts.reduce(0, +)
        if parallelModel.pipeline != nil {
            // Only the last stage computed them: a sum over the pipeline hands them to every stage.
            if sums.isEmpty {
                sums = [Double](repeating: 0, count: total)
                counts = [Int64](repeating: 0, count: total)
            }
            try pipeline.allreduce(&sums, .sum)
            try pipeline.allreduce(&counts, .sum)
        }
        var result: [[SequenceLogProbability]] = []
        var next = 0
        for count in spanCounts {
            result.append((next..<next + count).map { SequenceLogProbability(sum: sums[$0], count: Int(counts[$0])) })
            next += count
        }
        return result
    }
}
