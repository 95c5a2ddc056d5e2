import Model
import Parallel
import Runtime

/// Bytes a rank holds for the whole run under a pretraining config on a mesh, computed from the
/// layouts before anything is allocated (`meshlm mesh --config`). Transient buffers (ZeRO-3's
/// gathered blocks, ZeRO-2's block gradients, send buffers, BLAS workspace) are not counted.
public struct MemoryEstimate: Sendable, Equatable {
    public var parameters: Int
    public var gradients: Int
    public var optimizerState: Int
    /// Activation arenas: one per micro-batch a pipeline chunk holds at once.
    public var activations: Int
    public var total: Int { parameters + gradients + optimizerState + activations }

    public init(config: PretrainConfig, dims: ParallelDims, coordinates: MeshCoordinates) {
        let floats = MemoryLayout<Float>.stride
        let pp = dims.pipelineDegree, virtual = config.parallel.virtualStages
        let parts = ModelSplit.parts(config.model, sequenceLength: config.train.seqLen, stage: coordinates.pipeline,
                                     stageCount: pp, chunkCount: virtual)
        let tensor = TensorParallelLayout(config: config.model, degree: dims.tensorDegree, rank: coordinates.tensor, parts: parts)
        let dataRanks = dims.dataDegree * dims.contextDegree
        let shards = ShardLayout(layout: tensor.localLayout, degree: dataRanks, rank: coordinates.data * dims.contextDegree + coordinates.context)
        let (full, shard) = (shards.paddedCount, shards.shardCount)
        switch ZeroStage(rawValue: config.parallel.zeroStage) ?? .none {
        case .none: (parameters, gradients, optimizerState) = (full, full, 2 * full)
        case .optimizerState: (parameters, gradients, optimizerState) = (full, full + shard, 2 * shard)
        case .gradients: (parameters, gradients, optimizerState) = (full, shard, 2 * shard)
        case .parameters: (parameters, gradients, optimizerState) = (shard, shard, 2 * shard)
        }
        parameters *= floats
        gradients *= floats
        optimizerState *= floats
        let train = config.train
        let tokens = train.microBatchSize * train.seqLen
        let localTokens = config.parallel.sequenceParallel ? tokens / dims.tensorDegree : tokens
        let microBatches = max(train.globalBatchSize / max(train.microBatchSize * dataRanks, 1), 1)
        let schedule = pp == 1 ? [] : PipelineSchedule.actions(stage: coordinates.pipeline, stageCount: pp, chunkCount: virtual,
                                                               microBatchCount: virtual == 1 ? microBatches : microBatches - microBatches % pp)
        activations = parts.enumerated().reduce(0) { sum, item in
            let slots = pp == 1 ? 1 : max(PipelineSchedule.peakInFlight(schedule, chunk: item.offset), 1)
            return sum + slots * floats * LlamaModel.activationCount(config: tensor.localConfig, microBatchSize: train.microBatchSize,
                                                                    sequenceLength: train.seqLen, localTokenCount: localTokens,
                                                                    part: item.element, recompute: train.recompute)
        }
    }
}
