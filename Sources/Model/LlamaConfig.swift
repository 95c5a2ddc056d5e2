import Runtime

/// A Llama-style decoder's shape, with the Hugging Face `config.json` field names (DESIGN §4),
/// so a MeshLM model config and a transformers one read the same.
///
/// `model_type` picks the family's layer (see `DecoderLayer`): `llama`; `qwen2`, whose q/k/v
/// projections have biases (`attention_bias` defaults to true for it, as transformers' Qwen2
/// always has them); `qwen3`, which RMS-normalizes each query and key head before RoPE.
public struct LlamaConfig: Codable, Equatable, Sendable, ValidatedConfig {
    /// The decoder families MeshLM runs, by Hugging Face `model_type`.
    public enum ModelType: String, ConfigChoice {
        case llama, qwen2, qwen3
    }

    public var modelType: ModelType
    /// Whether q_proj, k_proj and v_proj have biases (o_proj never has one here).
    public var attentionBias: Bool
    /// 0: the model ends in the language-model head (`lm_head`, or the tied embedding). N > 0: it
    /// ends in a scalar head instead, `score.weight` [N, hidden_size] on the final hidden state —
    /// transformers' `…ForSequenceClassification` (reward models: N = 1; value models).
    public var numLabels: Int
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    /// Per-head width; defaults to hidden_size / num_attention_heads as in transformers.
    public var headDim: Int
    public var maxPositionEmbeddings: Int
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var rmsNormEps: Double
    public var tieWordEmbeddings: Bool
    /// Mixture of experts: 0 means a dense MLP in every layer.
    public var numLocalExperts: Int
    public var numExpertsPerTok: Int
    public var bosTokenId: Int?
    public var eosTokenId: Int?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", attentionBias = "attention_bias", numLabels = "num_labels"
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim"
        case maxPositionEmbeddings = "max_position_embeddings", ropeTheta = "rope_theta", ropeScaling = "rope_scaling"
        case rmsNormEps = "rms_norm_eps", tieWordEmbeddings = "tie_word_embeddings"
        case numLocalExperts = "num_local_experts", numExpertsPerTok = "num_experts_per_tok"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
    }

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int? = nil, headDim: Int? = nil, maxPositionEmbeddings: Int = 2048,
                ropeTheta: Double = 10_000, ropeScaling: RopeScaling? = nil, rmsNormEps: Double = 1e-5,
                tieWordEmbeddings: Bool = false, numLocalExperts: Int = 0, numExpertsPerTok: Int = 0,
                modelType: ModelType = .llama, attentionBias: Bool? = nil, numLabels: Int = 0) {
        self.modelType = modelType
        self.attentionBias = attentionBias ?? (modelType == .qwen2)
        self.numLabels = numLabels
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? hiddenSize / max(numAttentionHeads, 1)
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.rmsNormEps = rmsNormEps
        self.tieWordEmbeddings = tieWordEmbeddings
        self.numLocalExperts = numLocalExperts
        self.numExpertsPerTok = numExpertsPerTok
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decode(.modelType, default: .llama)
        attentionBias = try c.decode(.attentionBias, default: modelType == .qwen2)
        numLabels = try c.decode(.numLabels, default: 0)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decode(.numKeyValueHeads, default: numAttentionHeads)
        headDim = try c.decode(.headDim, default: hiddenSize / max(numAttentionHeads, 1))
        maxPositionEmbeddings = try c.decode(.maxPositionEmbeddings, default: 2048)
        ropeTheta = try c.decode(.ropeTheta, default: 10_000)
        ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling)
        rmsNormEps = try c.decode(.rmsNormEps, default: 1e-5)
        tieWordEmbeddings = try c.decode(.tieWordEmbeddings, default: false)
        numLocalExperts = try c.decode(.numLocalExperts, default: 0)
        numExpertsPerTok = try c.decode(.numExpertsPerTok, default: 0)
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId)
    }

    public func validate() throws(ConfigError) {
        for (key, value) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                             ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                             ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim),
                             ("max_position_embeddings", maxPositionEmbeddings)] where value < 1 {
            throw .invalid(key, value, "must be at least 1")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw .invalid("num_key_value_heads", numKeyValueHeads,
                           "must divide num_attention_heads \(numAttentionHeads) (each KV head serves a whole group of query heads)")
        }
        guard headDim % 2 == 0 else {
            throw .invalid("head_dim", headDim, "must be even (RoPE rotates pairs of dimensions)")
        }
        guard ropeTheta > 0 else { throw .invalid("rope_theta", ropeTheta, "must be positive") }
        guard rmsNormEps > 0 else { throw .invalid("rms_norm_eps", rmsNormEps, "must be positive") }
        if numLocalExperts > 0 {
            guard (1...numLocalExperts).contains(numExpertsPerTok) else {
                throw .invalid("num_experts_per_tok", numExpertsPerTok, "must be between 1 and num_local_experts \(numLocalExperts)")
            }
        }
        if let ropeScaling { try ropeScaling.validate() }
        guard numLabels >= 0 else { throw .invalid("num_labels", numLabels, "must be 0 (language-model head) or the score head's outputs") }
        // transformers' Qwen2 gives q/k/v biases always; Llama's and Qwen3's attention_bias
        // would add one to o_proj too, which MeshLM does not implement.
        if modelType == .qwen2 && !attentionBias {
            throw .invalid("attention_bias", attentionBias, "must be true for model_type qwen2 (its q/k/v projections always have biases; use model_type llama for none)")
        }
        if modelType != .qwen2 && attentionBias {
            throw .invalid("attention_bias", attentionBias, "is supported only for model_type qwen2 (q/k/v biases; \(modelType.rawValue)'s would bias o_proj too, which MeshLM does not implement)")
        }
    }

    /// Whether the model ends in a scalar (score) head instead of the language-model head.
    public var hasScoreHead: Bool { numLabels > 0 }

    /// The head's outputs per token: vocab_size logits, or num_labels scores.
    public var headWidth: Int { hasScoreHead ? numLabels : vocabSize }

    /// Whether the head projects with the embedding table (a tied language-model head).
    public var hasTiedHead: Bool { tieWordEmbeddings && !hasScoreHead }

    /// Whether each query and key head is RMS-normalized (`q_norm`, `k_norm`) before RoPE.
    public var queryKeyNorm: Bool { modelType == .qwen3 }

    /// Trainable parameters of the whole (unsharded) model.
    public var parameterCount: Int {
        let attention = hiddenSize * numAttentionHeads * headDim * 2 + hiddenSize * numKeyValueHeads * headDim * 2
            + (attentionBias ? (numAttentionHeads + 2 * numKeyValueHeads) * headDim : 0) + (queryKeyNorm ? 2 * headDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize * max(numLocalExperts, 1) + (numLocalExperts > 0 ? hiddenSize * numLocalExperts : 0)
        let layer = attention + mlp + 2 * hiddenSize
        let embeddings = vocabSize * hiddenSize + (hasTiedHead ? 0 : headWidth * hiddenSize)
        return numHiddenLayers * layer + embeddings + hiddenSize
    }
}

/// Llama-3 style RoPE frequency scaling (transformers' `rope_scaling` with `rope_type: llama3`).
public struct RopeScaling: Codable, Equatable, Sendable, ValidatedConfig {
    public enum Kind: String, ConfigChoice { case llama3 }
    public var ropeType: Kind
    public var factor: Double
    public var lowFreqFactor: Double
    public var highFreqFactor: Double
    public var originalMaxPositionEmbeddings: Int

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", factor, lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
    }

    public init(factor: Double, lowFreqFactor: Double = 1, highFreqFactor: Double = 4, originalMaxPositionEmbeddings: Int = 8192) {
        self.ropeType = .llama3
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
    }

    public func validate() throws(ConfigError) {
        guard factor >= 1 else { throw .invalid("rope_scaling.factor", factor, "must be at least 1") }
        guard highFreqFactor > lowFreqFactor else {
            throw .invalid("rope_scaling.high_freq_factor", highFreqFactor, "must exceed low_freq_factor \(lowFreqFactor)")
        }
        guard originalMaxPositionEmbeddings > 0 else {
            throw .invalid("rope_scaling.original_max_position_embeddings", originalMaxPositionEmbeddings, "must be at least 1")
        }
    }
}
