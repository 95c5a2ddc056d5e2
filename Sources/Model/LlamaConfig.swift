import Runtime

/// A Llama-style decoder's shape, with the Hugging Face `config.json` field names (DESIGN §4),
/// so a MeshLM model config and a transformers one read the same.
///
/// `model_type` picks the family's layer (see `DecoderLayer`): `llama`; `qwen2`, whose q/k/v
/// projections have biases (`attention_bias` defaults to true for it, as transformers' Qwen2
/// always has them); `qwen3`, which RMS-normalizes each query and key head before RoPE. The
/// mixture-of-experts families replace the MLP with routed SwiGLU experts (`ExpertRouting`,
/// docs/moe.md): `mixtral` (Llama attention, Mixtral's tensor names) and `qwen3_moe` (Qwen3
/// attention, Qwen-MoE's names) and `qwen2_moe` (Qwen2 attention, Qwen-MoE's names, and a shared
/// expert beside the routed ones).
public struct LlamaConfig: Codable, Equatable, Sendable, ValidatedConfig {
    /// The decoder families MeshLM runs, by Hugging Face `model_type`.
    public enum ModelType: String, ConfigChoice {
        case llama, qwen2, qwen3, mixtral
        case qwen2MoE = "qwen2_moe", qwen3MoE = "qwen3_moe"

        /// Whether the family's layers may hold routed experts instead of a dense MLP.
        public var hasExperts: Bool { self == .mixtral || self == .qwen2MoE || self == .qwen3MoE }

        /// Whether the family's q/k/v projections always have biases (transformers' Qwen2 and
        /// Qwen2-MoE).
        public var hasAttentionBias: Bool { self == .qwen2 || self == .qwen2MoE }
    }

    /// How the auxiliary load-balancing loss is formed (docs/moe.md, "Losses").
    public enum RouterAuxLossType: String, ConfigChoice {
        /// Switch Transformer / Megatron Core: per layer, E/(k·N²) · Σ_e c_e · Σ_n p_ne (1 when
        /// perfectly balanced), summed over the layers.
        case `switch`
        /// transformers' Mixtral / Qwen-MoE `load_balancing_loss_func`: E · Σ_e f_e · P_e over
        /// every layer's tokens of the forward pass together (f_e: the share of routed slots,
        /// summing to k; so k when perfectly balanced).
        case hf
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
    /// Mixture of experts (`mixtral`, `qwen3_moe`): experts per sparse layer (transformers'
    /// Qwen-MoE calls it `num_experts`); 0 means a dense MLP in every layer.
    public var numLocalExperts: Int
    /// Experts each token is routed to (top-k).
    public var numExpertsPerTok: Int
    /// Each expert's SwiGLU width (Qwen-MoE's `moe_intermediate_size`; Mixtral's experts use
    /// `intermediate_size`, the default). Dense layers keep `intermediate_size`.
    public var moeIntermediateSize: Int
    /// Whether the top-k routing weights are renormalized to sum to 1 (Mixtral always does;
    /// Qwen-MoE's `norm_topk_prob`).
    public var normTopkProb: Bool
    /// Qwen-MoE's layer choice: layer l is sparse when (l + 1) % decoder_sparse_step == 0 and l
    /// is not in `mlp_only_layers`.
    public var decoderSparseStep: Int
    public var mlpOnlyLayers: [Int]
    /// The load-balancing loss's coefficient (transformers' name) and form.
    public var routerAuxLossCoef: Double
    public var routerAuxLossType: RouterAuxLossType
    /// ST-MoE's router z-loss coefficient: mean over tokens of logsumexp(router logits)², per layer.
    public var routerZLossCoef: Double
    /// Expert capacity factor: each expert takes at most ceil(factor · N · k / E) of a
    /// micro-batch's N tokens, the most probable ones; the rest of its slots are dropped (they
    /// add nothing; the residual stream carries the token on). 0: dropless.
    public var moeCapacityFactor: Double
    /// Qwen2-MoE's shared expert: a SwiGLU of this width that every token goes through, scaled by
    /// sigmoid(shared_expert_gate · m), added to the routed experts' sum; 0: none.
    public var sharedExpertIntermediateSize: Int
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
        case moeIntermediateSize = "moe_intermediate_size", normTopkProb = "norm_topk_prob"
        case decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
        case routerAuxLossCoef = "router_aux_loss_coef", routerAuxLossType = "router_aux_loss_type"
        case routerZLossCoef = "router_z_loss_coef", moeCapacityFactor = "moe_capacity_factor"
        case sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case bosTokenId = "bos_token_id", eosTokenId = "eos_token_id"
    }

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int? = nil, headDim: Int? = nil, maxPositionEmbeddings: Int = 2048,
                ropeTheta: Double = 10_000, ropeScaling: RopeScaling? = nil, rmsNormEps: Double = 1e-5,
                tieWordEmbeddings: Bool = false, numLocalExperts: Int = 0, numExpertsPerTok: Int = 0,
                modelType: ModelType = .llama, attentionBias: Bool? = nil, numLabels: Int = 0) {
        self.modelType = modelType
        self.attentionBias = attentionBias ?? modelType.hasAttentionBias
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
        moeIntermediateSize = intermediateSize
        normTopkProb = true
        decoderSparseStep = 1
        mlpOnlyLayers = []
        routerAuxLossCoef = 0.01
        routerAuxLossType = .switch
        routerZLossCoef = 0
        moeCapacityFactor = 0
        sharedExpertIntermediateSize = 0
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decode(.modelType, default: .llama)
        attentionBias = try c.decode(.attentionBias, default: modelType.hasAttentionBias)
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
        moeIntermediateSize = try c.decode(.moeIntermediateSize, default: intermediateSize)
        normTopkProb = try c.decode(.normTopkProb, default: true)
        decoderSparseStep = try c.decode(.decoderSparseStep, default: 1)
        mlpOnlyLayers = try c.decode(.mlpOnlyLayers, default: [])
        routerAuxLossCoef = try c.decode(.routerAuxLossCoef, default: 0.01)
        routerAuxLossType = try c.decode(.routerAuxLossType, default: .switch)
        routerZLossCoef = try c.decode(.routerZLossCoef, default: 0)
        moeCapacityFactor = try c.decode(.moeCapacityFactor, default: 0)
        sharedExpertIntermediateSize = try c.decode(.sharedExpertIntermediateSize, default: 0)
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
        if modelType.hasExperts {
            guard numLocalExperts >= 1 else {
                throw .invalid("num_local_experts", numLocalExperts, "must be at least 1 for model_type \(modelType.rawValue) (a mixture-of-experts family)")
            }
            guard (1...numLocalExperts).contains(numExpertsPerTok) else {
                throw .invalid("num_experts_per_tok", numExpertsPerTok, "must be between 1 and num_local_experts \(numLocalExperts)")
            }
            guard moeIntermediateSize >= 1 else { throw .invalid("moe_intermediate_size", moeIntermediateSize, "must be at least 1") }
            guard decoderSparseStep >= 1 else { throw .invalid("decoder_sparse_step", decoderSparseStep, "must be at least 1") }
            if let layer = mlpOnlyLayers.first(where: { !(0..<numHiddenLayers).contains($0) }) {
                throw .invalid("mlp_only_layers", layer, "must name layers between 0 and \(numHiddenLayers - 1)")
            }
            for (key, value) in [("router_aux_loss_coef", routerAuxLossCoef), ("router_z_loss_coef", routerZLossCoef),
                                 ("moe_capacity_factor", moeCapacityFactor)] where value < 0 {
                throw .invalid(key, value, "must be 0 or more")
            }
            if modelType == .mixtral {
                guard moeIntermediateSize == intermediateSize else {
                    throw .invalid("moe_intermediate_size", moeIntermediateSize, "must equal intermediate_size \(intermediateSize) for mixtral (its experts are intermediate_size wide; qwen3_moe has its own width)")
                }
                guard decoderSparseStep == 1 && mlpOnlyLayers.isEmpty else {
                    throw .invalid(decoderSparseStep != 1 ? "decoder_sparse_step" : "mlp_only_layers",
                                   decoderSparseStep != 1 ? "\(decoderSparseStep)" : "\(mlpOnlyLayers)",
                                   "must be the default for mixtral (every layer has experts); qwen3_moe allows dense layers")
                }
            }
            guard sharedExpertIntermediateSize >= 0 else {
                throw .invalid("shared_expert_intermediate_size", sharedExpertIntermediateSize, "must be 0 (no shared expert) or more")
            }
            guard sharedExpertIntermediateSize == 0 || modelType == .qwen2MoE else {
                throw .invalid("shared_expert_intermediate_size", sharedExpertIntermediateSize, "is Qwen2-MoE's shared expert: use model_type qwen2_moe, or 0")
            }
            guard sparseLayerCount > 0 else {
                throw .invalid("mlp_only_layers", mlpOnlyLayers, "leaves no layer with experts (with decoder_sparse_step \(decoderSparseStep))")
            }
        } else if numLocalExperts != 0 {
            throw .invalid("num_local_experts", numLocalExperts, "needs a mixture-of-experts model_type (mixtral or qwen3_moe); \(modelType.rawValue) is dense: use 0")
        }
        if let ropeScaling { try ropeScaling.validate() }
        guard numLabels >= 0 else { throw .invalid("num_labels", numLabels, "must be 0 (language-model head) or the score head's outputs") }
        // transformers' Qwen2 gives q/k/v biases always; Llama's and Qwen3's attention_bias
        // would add one to o_proj too, which MeshLM does not implement.
        if modelType.hasAttentionBias && !attentionBias {
            throw .invalid("attention_bias", attentionBias, "must be true for model_type \(modelType.rawValue) (its q/k/v projections always have biases; use model_type llama for none)")
        }
        if !modelType.hasAttentionBias && attentionBias {
            throw .invalid("attention_bias", attentionBias, "is supported only for model_type qwen2 and qwen2_moe (q/k/v biases; \(modelType.rawValue)'s would bias o_proj too, which MeshLM does not implement)")
        }
    }

    /// Whether the model ends in a scalar (score) head instead of the language-model head.
    public var hasScoreHead: Bool { numLabels > 0 }

    /// The head's outputs per token: vocab_size logits, or num_labels scores.
    public var headWidth: Int { hasScoreHead ? numLabels : vocabSize }

    /// Whether the head projects with the embedding table (a tied language-model head).
    public var hasTiedHead: Bool { tieWordEmbeddings && !hasScoreHead }

    /// Whether each query and key head is RMS-normalized (`q_norm`, `k_norm`) before RoPE.
    public var queryKeyNorm: Bool { modelType == .qwen3 || modelType == .qwen3MoE }

    /// Whether decoder layer `layer` holds routed experts instead of a dense MLP (Qwen-MoE's rule).
    public func isSparse(layer: Int) -> Bool {
        modelType.hasExperts && numLocalExperts > 0 && (layer + 1) % decoderSparseStep == 0 && !mlpOnlyLayers.contains(layer)
    }

    /// How many layers hold experts.
    public var sparseLayerCount: Int { (0..<numHiddenLayers).count { isSparse(layer: $0) } }

    /// Whether some layer has experts.
    public var hasExperts: Bool { sparseLayerCount > 0 }

    /// The dense MLP's width where a layer has one; 0 when every layer has experts.
    public var denseIntermediateSize: Int { sparseLayerCount == numHiddenLayers ? 0 : intermediateSize }

    /// Trainable parameters of the whole (unsharded) model.
    public var parameterCount: Int {
        let attention = hiddenSize * numAttentionHeads * headDim * 2 + hiddenSize * numKeyValueHeads * headDim * 2
            + (attentionBias ? (numAttentionHeads + 2 * numKeyValueHeads) * headDim : 0) + (queryKeyNorm ? 2 * headDim : 0)
        let sparse = sparseLayerCount
        let experts = sparse * (3 * hiddenSize * moeIntermediateSize * numLocalExperts + hiddenSize * numLocalExperts
                                + (sharedExpertIntermediateSize > 0 ? 3 * hiddenSize * sharedExpertIntermediateSize + hiddenSize : 0))
        let dense = (numHiddenLayers - sparse) * 3 * hiddenSize * intermediateSize
        let embeddings = vocabSize * hiddenSize + (hasTiedHead ? 0 : headWidth * hiddenSize)
        return numHiddenLayers * (attention + 2 * hiddenSize) + experts + dense + embeddings + hiddenSize
    }

    /// Parameters one token's forward uses: the embedding row is not counted as a product, the
    /// experts count k of E (and the router). Equals `parameterCount` for a dense model.
    public var activeParameterCount: Int {
        guard hasExperts else { return parameterCount }
        let unused = sparseLayerCount * 3 * hiddenSize * moeIntermediateSize * (numLocalExperts - numExpertsPerTok)
        return parameterCount - unused
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
