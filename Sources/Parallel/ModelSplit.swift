import Model
import Runtime

/// Whether a mesh can split a model: checked before any work, with messages that name both
/// numbers (DESIGN §3).
public enum ModelSplit {
    /// Throws the first reason `model` cannot be split over `dims`.
    /// - Parameter virtualStages: model chunks per pipeline stage (interleaved schedule).
    public static func validate(_ model: LlamaConfig, on dims: ParallelDims, virtualStages: Int = 1) throws(MeshError) {
        let tp = dims.tensorDegree
        guard model.numAttentionHeads % tp == 0 else {
            throw MeshError("tensor parallel degree tp \(tp) must divide num_attention_heads \(model.numAttentionHeads)")
        }
        let kvHeads = model.numKeyValueHeads
        guard kvHeads % tp == 0 || tp % kvHeads == 0 else {
            throw MeshError("tensor parallel degree tp \(tp) must divide num_key_value_heads \(kvHeads) or be a multiple of it (KV heads are then replicated)")
        }
        guard model.intermediateSize % tp == 0 else {
            throw MeshError("tensor parallel degree tp \(tp) must divide intermediate_size \(model.intermediateSize)")
        }
        guard !model.hasExperts || model.moeIntermediateSize % tp == 0 else {
            throw MeshError("tensor parallel degree tp \(tp) must divide moe_intermediate_size \(model.moeIntermediateSize) (each rank holds a slice of every expert)")
        }
        guard model.sharedExpertIntermediateSize % tp == 0 else {
            throw MeshError("tensor parallel degree tp \(tp) must divide shared_expert_intermediate_size \(model.sharedExpertIntermediateSize)")
        }
        guard model.vocabSize >= tp else {
            throw MeshError("tensor parallel degree tp \(tp) exceeds vocab_size \(model.vocabSize) (each rank needs a slice of the vocabulary)")
        }
        let pp = dims.pipelineDegree
        if virtualStages > 1 {
            guard model.numHiddenLayers >= pp * virtualStages else {
                throw MeshError("num_hidden_layers \(model.numHiddenLayers) is fewer than the virtual pipeline stages pp \(pp) × virtual_stages \(virtualStages) = \(pp * virtualStages)")
            }
        }
        guard model.numHiddenLayers >= pp else {
            throw MeshError("num_hidden_layers \(model.numHiddenLayers) is fewer than the pipeline stages pp \(pp)")
        }
        if dims.expertDegree > 1 {
            guard model.numLocalExperts > 0 else {
                throw MeshError("expert parallel degree ep \(dims.expertDegree) needs a mixture-of-experts model, but num_local_experts is 0")
            }
            guard model.numLocalExperts % dims.expertDegree == 0 else {
                throw MeshError("expert parallel degree ep \(dims.expertDegree) must divide num_local_experts \(model.numLocalExperts)")
            }
        }
    }

    /// Whether a step's micro-batches can fill the pipeline: 1F1B needs at least pp of them, the
    /// interleaved schedule a multiple of pp.
    public static func validatePipeline(microBatchCount: Int, stageCount: Int, virtualStages: Int) throws(MeshError) {
        guard stageCount > 1 else { return }
        guard microBatchCount >= stageCount else {
            throw MeshError("pipeline parallel degree pp \(stageCount) needs at least \(stageCount) micro-batches per step for 1F1B, but the step has \(microBatchCount) (train.global_batch_size / (dp × train.micro_batch_size))")
        }
        guard virtualStages == 1 || microBatchCount % stageCount == 0 else {
            throw MeshError("the interleaved pipeline schedule (virtual_stages \(virtualStages)) needs the micro-batches per step (\(microBatchCount)) to be a multiple of pp \(stageCount)")
        }
    }

    /// The parts of the model pipeline stage `stage` holds: chunk `c` is virtual stage
    /// `c · stageCount + stage` of `stageCount · chunkCount`, the first holding the embedding and
    /// the last the head.
    public static func parts(_ model: LlamaConfig, sequenceLength: Int, stage: Int, stageCount: Int,
                             chunkCount: Int = 1) -> [ModelPart] {
        let virtualCount = stageCount * chunkCount
        let ranges = layerRanges(model, sequenceLength: sequenceLength, stageCount: virtualCount)
        return (0..<chunkCount).map { chunk in
            let virtual = chunk * stageCount + stage
            return ModelPart(layers: ranges[virtual], hasEmbedding: virtual == 0, hasHead: virtual == virtualCount - 1)
        }
    }

    /// The layers each pipeline stage holds: contiguous ranges of at least one layer that
    /// minimize the most expensive stage, counting training FLOPs per token — 6 × a layer's
    /// parameters + 12 · hidden · T for its attention, and for the last stage also the head's
    /// 6 · hidden · vocab (the embedding lookup costs next to nothing). A large vocabulary thus
    /// moves layers from the last stage to the others (124M: 8 + 4 layers on two stages).
    public static func layerRanges(_ model: LlamaConfig, sequenceLength: Int, stageCount: Int) -> [Range<Int>] {
        let layerCount = model.numHiddenLayers
        precondition(layerCount >= stageCount && stageCount >= 1)
        let h = model.hiddenSize
        let layerParameters = 2 * h * model.numAttentionHeads * model.headDim + 2 * h * model.numKeyValueHeads * model.headDim
            + 3 * h * model.intermediateSize + 2 * h
        let layerCost = Double(6 * layerParameters + 12 * h * sequenceLength)
        let headCost = Double(6 * h * model.vocabSize)
        // best[k][i]: the smallest possible most expensive stage when the first k stages hold the
        // first i layers; cut[k][i] the start of the k-th stage in that split.
        var best = [[Double]](repeating: [Double](repeating: .infinity, count: layerCount + 1), count: stageCount + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: layerCount + 1), count: stageCount + 1)
        best[0][0] = 0
        for k in 1...stageCount {
            for i in k...layerCount {
                for j in (k - 1)..<i where best[k - 1][j] < .infinity {
                    let cost = Double(i - j) * layerCost + (k == stageCount ? headCost : 0)
                    let candidate = max(best[k - 1][j], cost)
                    if candidate < best[k][i] {
                        best[k][i] = candidate
                        cut[k][i] = j
                    }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var end = layerCount
        for k in stride(from: stageCount, to: 0, by: -1) {
            let start = cut[k][end]
            ranges.append(start..<end)
            end = start
        }
        return ranges.reversed()
    }
}
