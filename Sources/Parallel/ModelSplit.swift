import Model
import Runtime

/// Whether a mesh can split a model: checked before any work, with messages that name both
/// numbers (DESIGN §3).
public enum ModelSplit {
    /// Throws the first reason `model` cannot be split over `dims`.
    public static func validate(_ model: LlamaConfig, on dims: ParallelDims) throws(MeshError) {
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
        guard model.numHiddenLayers >= dims.pipelineDegree else {
            throw MeshError("num_hidden_layers \(model.numHiddenLayers) is fewer than the pipeline stages pp \(dims.pipelineDegree)")
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
