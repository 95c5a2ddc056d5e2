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
        guard pp == 1 || !model.tieWordEmbeddings else {
            throw MeshError("tie_word_embeddings with pipeline parallelism (pp \(pp)) is not supported yet: the first and last stages would share the embedding table")
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
    public static func parts(_ model: LlamaConfig, stage: Int, stageCount: Int, chunkCount: Int = 1) -> [ModelPart] {
        let virtualCount = stageCount * chunkCount
        let ranges = layerRanges(layerCount: model.numHiddenLayers, stageCount: virtualCount)
        return (0..<chunkCount).map { chunk in
            let virtual = chunk * stageCount + stage
            return ModelPart(layers: ranges[virtual], hasEmbedding: virtual == 0, hasHead: virtual == virtualCount - 1)
        }
    }

    /// The layers each pipeline stage holds: as even as possible, the remainder going to the
    /// middle stages (the first holds the embedding and the last the head and loss, so those
    /// get fewer layers when the count does not divide).
    public static func layerRanges(layerCount: Int, stageCount: Int) -> [Range<Int>] {
        precondition(layerCount >= stageCount && stageCount >= 1)
        let base = layerCount / stageCount
        let extra = layerCount % stageCount
        var counts = [Int](repeating: base, count: stageCount)
        // Hand extra layers to stages from the middle outwards.
        var order = Array(0..<stageCount).sorted { abs(2 * $0 - (stageCount - 1)) < abs(2 * $1 - (stageCount - 1)) }
        order = Array(order.prefix(extra))
        for stage in order { counts[stage] += 1 }
        var ranges: [Range<Int>] = []
        var start = 0
        for count in counts {
            ranges.append(start..<start + count)
            start += count
        }
        return ranges
    }
}
