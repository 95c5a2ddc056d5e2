/// What a parameter tensor is to the model. The parameter layout, the tensor-parallel split,
/// initialization, weight decay, the training model and the inference model all find tensors by
/// role, so a new kind of tensor is added here once.
public enum TensorRole: Sendable, Hashable {
    case embedding
    // One decoder layer's, in arena order (see `DecoderLayer.tensors`).
    case inputNorm, query, key, value, queryBias, keyBias, valueBias, queryNorm, keyNorm, output
    case postAttentionNorm, gate, up, down
    // A sparse layer's instead of gate/up/down (`ExpertRouting`): the router [E, C], then each
    // expert's SwiGLU projections, expert by expert.
    case router, expertGate(Int), expertUp(Int), expertDown(Int)
    // Qwen2-MoE's shared expert (after the routed ones): its SwiGLU and its [1, C] sigmoid gate.
    case sharedGate, sharedUp, sharedDown, sharedExpertGate
    // The head's: the final norm, then the language-model head or (`num_labels` > 0) the
    // scalar head `score.weight`.
    case finalNorm, languageModelHead, score
    // A LoRA adapter's matrices on a projection (`LoRAConfig`), in the layer's adapter block,
    // and DoRA's magnitude vector.
    case loraA(Projection), loraB(Projection), loraMagnitude(Projection)

    /// Whether AdamW decays it: matrices and embeddings do; norm weights and biases do not
    /// (transformers' `get_decay_parameter_names` leaves out biases and norms alike, by name:
    /// DoRA's `lora_magnitude_vector` is neither, so it decays as under transformers' Trainer).
    public var decays: Bool {
        switch self {
        case .embedding, .query, .key, .value, .output, .gate, .up, .down, .languageModelHead, .score, .loraA, .loraB, .loraMagnitude,
             .router, .expertGate, .expertUp, .expertDown, .sharedGate, .sharedUp, .sharedDown, .sharedExpertGate: true
        case .inputNorm, .postAttentionNorm, .queryNorm, .keyNorm, .finalNorm, .queryBias, .keyBias, .valueBias: false
        }
    }

    /// Whether it is a LoRA B matrix (LoRA+ trains it at a larger learning rate).
    public var isLoRAB: Bool {
        if case .loraB = self { return true }
        return false
    }

    /// Whether it is an RMSNorm weight (initialized to ones).
    public var isNorm: Bool {
        switch self {
        case .inputNorm, .postAttentionNorm, .queryNorm, .keyNorm, .finalNorm: true
        default: false
        }
    }

    /// Whether it is a bias (initialized to zeros, as torch initializes a `Linear`'s bias here).
    public var isBias: Bool {
        switch self {
        case .queryBias, .keyBias, .valueBias: true
        default: false
        }
    }

    /// Whether it is a projection that writes into the residual stream (o_proj, down_proj), which
    /// GPT-2's scaled initialization gives a smaller deviation.
    public var writesResidual: Bool {
        switch self {
        case .output, .down, .expertDown, .sharedDown: true
        default: false
        }
    }

    /// The expert a sparse layer's expert tensor belongs to.
    public var expert: Int? {
        switch self {
        case .expertGate(let e), .expertUp(let e), .expertDown(let e): e
        default: nil
        }
    }
}

/// The one description of a decoder layer — which tensors it has and the order its forward runs
/// them in — that the training model (`LlamaModel`), the inference model (`InferenceModel`), the
/// parameter layout and the tensor-parallel split all follow. A family's layer differs only in
/// what this says (`LlamaConfig.modelType`):
///
///     llama   x + o_proj(attention(rope(q), rope(k), v)),  q, k, v = q/k/v_proj(input_layernorm(x))
///             h + down_proj(silu(gate_proj(m)) · up_proj(m)),  m = post_attention_layernorm(h)
///     qwen2   the same with biases on q_proj, k_proj and v_proj (`attention_bias`)
///     qwen3   the same with q_norm / k_norm: RMSNorm over each head's head_dim values (one
///             [head_dim] weight shared by the heads) between the projection and RoPE
///     mixtral, qwen2_moe, qwen3_moe   llama's / qwen2's / qwen3's attention; a sparse layer's
///             MLP is a mixture of experts: h + Σ_j w_j · down_e(silu(gate_e(m)) · up_e(m)) over
///             the k experts e the router picks for the token (`ExpertRouting`); qwen2_moe adds
///             a shared expert, σ(shared_expert_gate · m) · down_s(silu(gate_s(m)) · up_s(m))
///
/// Shapes (HF convention, [out, in]), Q = num_attention_heads × head_dim, K =
/// num_key_value_heads × head_dim, C = hidden_size, I = intermediate_size, D = head_dim:
///
///     input_layernorm            [C]        q_norm, k_norm (qwen3)   [D]
///     q_proj [Q, C]  k_proj, v_proj [K, C]  q/k/v_proj.bias (bias)   [Q], [K], [K]
///     o_proj [C, Q]  post_attention_layernorm [C]
///     gate_proj, up_proj [I, C]  down_proj [C, I]
///
///     sparse layers: router [E, C] (mixtral `block_sparse_moe.gate`, qwen3_moe `mlp.gate`), then
///     for each expert e: gate [I_e, C], up [I_e, C], down [C, I_e] (mixtral w1, w3, w2;
///     qwen*_moe gate_proj, up_proj, down_proj), I_e = moe_intermediate_size; qwen2_moe's shared
///     expert: mlp.shared_expert.gate_proj, up_proj [I_s, C], down_proj [C, I_s] and
///     mlp.shared_expert_gate [1, C], I_s = shared_expert_intermediate_size
///
/// q, k and v are adjacent in the arena, and so are their biases and gate/up, so the inference
/// model may run each group as one product.
public struct DecoderLayer: Sendable, Equatable {
    public struct Tensor: Sendable, Equatable {
        public let role: TensorRole
        /// The Hugging Face name after `model.layers.N.`.
        public let suffix: String
        public let shape: [Int]
    }

    public let attentionBias: Bool
    public let queryKeyNorm: Bool
    /// Routed experts in this layer; 0 for a dense MLP.
    public let experts: Int
    /// The layer's tensors in arena order.
    public let tensors: [Tensor]

    /// Decoder layer `layer` as `config` describes it (with its local sizes under tensor
    /// parallelism); only a mixture-of-experts family's layers differ from each other.
    public init(config: LlamaConfig, layer: Int) {
        let (c, i, d) = (config.hiddenSize, config.intermediateSize, config.headDim)
        let (q, k) = (config.numAttentionHeads * d, config.numKeyValueHeads * d)
        attentionBias = config.attentionBias
        queryKeyNorm = config.queryKeyNorm
        var tensors: [Tensor] = [
            Tensor(role: .inputNorm, suffix: "input_layernorm.weight", shape: [c]),
            Tensor(role: .query, suffix: "self_attn.q_proj.weight", shape: [q, c]),
            Tensor(role: .key, suffix: "self_attn.k_proj.weight", shape: [k, c]),
            Tensor(role: .value, suffix: "self_attn.v_proj.weight", shape: [k, c]),
        ]
        if attentionBias {
            tensors += [Tensor(role: .queryBias, suffix: "self_attn.q_proj.bias", shape: [q]),
                        Tensor(role: .keyBias, suffix: "self_attn.k_proj.bias", shape: [k]),
                        Tensor(role: .valueBias, suffix: "self_attn.v_proj.bias", shape: [k])]
        }
        if queryKeyNorm {
            tensors += [Tensor(role: .queryNorm, suffix: "self_attn.q_norm.weight", shape: [d]),
                        Tensor(role: .keyNorm, suffix: "self_attn.k_norm.weight", shape: [d])]
        }
        tensors += [
            Tensor(role: .output, suffix: "self_attn.o_proj.weight", shape: [c, q]),
            Tensor(role: .postAttentionNorm, suffix: "post_attention_layernorm.weight", shape: [c]),
        ]
        experts = config.isSparse(layer: layer) ? config.numLocalExperts : 0
        if experts > 0 {
            let e = config.moeIntermediateSize
            let mixtral = config.modelType == .mixtral
            let block = mixtral ? "block_sparse_moe." : "mlp."
            tensors.append(Tensor(role: .router, suffix: block + "gate.weight", shape: [experts, c]))
            for expert in 0..<experts {
                let prefix = block + "experts.\(expert)."
                tensors += [
                    Tensor(role: .expertGate(expert), suffix: prefix + (mixtral ? "w1" : "gate_proj") + ".weight", shape: [e, c]),
                    Tensor(role: .expertUp(expert), suffix: prefix + (mixtral ? "w3" : "up_proj") + ".weight", shape: [e, c]),
                    Tensor(role: .expertDown(expert), suffix: prefix + (mixtral ? "w2" : "down_proj") + ".weight", shape: [c, e]),
                ]
            }
            let shared = config.sharedExpertIntermediateSize
            if shared > 0 {
                tensors += [
                    Tensor(role: .sharedGate, suffix: "mlp.shared_expert.gate_proj.weight", shape: [shared, c]),
                    Tensor(role: .sharedUp, suffix: "mlp.shared_expert.up_proj.weight", shape: [shared, c]),
                    Tensor(role: .sharedDown, suffix: "mlp.shared_expert.down_proj.weight", shape: [c, shared]),
                    Tensor(role: .sharedExpertGate, suffix: "mlp.shared_expert_gate.weight", shape: [1, c]),
                ]
            }
        } else {
            tensors += [
                Tensor(role: .gate, suffix: "mlp.gate_proj.weight", shape: [i, c]),
                Tensor(role: .up, suffix: "mlp.up_proj.weight", shape: [i, c]),
                Tensor(role: .down, suffix: "mlp.down_proj.weight", shape: [c, i]),
            ]
        }
        self.tensors = tensors
    }

    /// One layer's forward, in the order every implementation runs it. `kernels` decides how each
    /// step is computed (training's saved activations and tensor-parallel regions, or decode's
    /// rows and paged KV cache); this decides what the steps are.
    public func forward(_ w: LayerWeights, on kernels: some DecoderLayerKernels) {
        // Attention sublayer: h = x + o_proj(attention(rope(q), rope(k), v)).
        kernels.normalize(.attention, weight: w.inputNorm)
        kernels.project(.attention, [(.query, w.query, w.queryBias), (.key, w.key, w.keyBias), (.value, w.value, w.valueBias)],
                        adapters: w.adapters)
        if let queryNorm = w.queryNorm, let keyNorm = w.keyNorm {
            kernels.normalizeHeads(queryWeight: queryNorm, keyWeight: keyNorm)
        }
        kernels.rotate()
        kernels.attend()
        kernels.projectIntoStream(.output, weight: w.output, adapters: w.adapters)
        // MLP sublayer: y = h + down_proj(silu(gate_proj(m)) · up_proj(m)), or the experts'.
        kernels.normalize(.mlp, weight: w.postAttentionNorm)
        switch w.feedForward {
        case .dense(let gate, let up, let down):
            kernels.project(.mlp, [(.gate, gate, nil), (.up, up, nil)], adapters: w.adapters)
            kernels.activate()
            kernels.projectIntoStream(.down, weight: down, adapters: w.adapters)
        case .experts(let experts):
            kernels.mixExperts(experts)
        }
    }
}

/// The two sublayers of a decoder layer.
public enum DecoderSublayer: Sendable {
    case attention, mlp
}

/// How one implementation computes the steps of `DecoderLayer.forward` for one layer: which
/// kernels, on which buffers, with which collectives. The step order is not its business.
public protocol DecoderLayerKernels {
    /// The sublayer's RMSNorm of the residual stream (the layer's input for attention, the
    /// stream after attention for the MLP) into the input of its projections.
    func normalize(_ sublayer: DecoderSublayer, weight: UnsafeMutablePointer<Float>)
    /// The sublayer's input projections from that normalized input, each with its bias when it
    /// has one and its LoRA adapter when `adapters` has one: (q, k, v) for attention, (gate, up)
    /// for the MLP.
    func project(_ sublayer: DecoderSublayer,
                 _ projections: [(projection: Projection, weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>?)],
                 adapters: LayerAdapters?)
    /// RMSNorm of each query head and each key head over its head_dim values (qwen3).
    func normalizeHeads(queryWeight: UnsafeMutablePointer<Float>, keyWeight: UnsafeMutablePointer<Float>)
    /// RoPE of the queries and keys at their positions.
    func rotate()
    /// Causal attention of the queries over the keys and values of their sequences.
    func attend()
    /// SwiGLU: silu(gate) · up.
    func activate()
    /// A sublayer's output projection (`.output` = o_proj, `.down` = down_proj), with its LoRA
    /// adapter when `adapters` has one, added to the residual stream.
    func projectIntoStream(_ projection: Projection, weight: UnsafeMutablePointer<Float>, adapters: LayerAdapters?)
    /// A sparse layer's MLP from the normalized stream: route each token to its top-k experts,
    /// run each expert's SwiGLU on the tokens it received, and add their weighted sum to the
    /// residual stream.
    func mixExperts(_ experts: ExpertWeights)
}

/// Where each tensor of a decoder layer sits inside the layer's block, in floats from the block's
/// first element (the pointer `ParameterAccess` hands out). Read once from the layout, by role.
public struct LayerOffsets: Sendable {
    /// Offset of each tensor the layer has, by role.
    public let offsets: [TensorRole: Int]
    /// The offsets of the tensors that train (frozen ones left out): where gradients go.
    public let gradientOffsets: [TensorRole: Int]
    /// Whether any tensor of the layer trains.
    public let trains: Bool
    /// Routed experts in the layer (0: a dense MLP).
    public let experts: Int

    public init(layout: ParameterLayout, layer: Int) {
        let start = layout.range(of: .layer(layer)).lowerBound
        var offsets: [TensorRole: Int] = [:], gradientOffsets: [TensorRole: Int] = [:]
        var experts = 0
        for entry in layout.entries(in: .layer(layer)) {
            offsets[entry.role] = entry.offset - start
            if entry.trainable { gradientOffsets[entry.role] = entry.offset - start }
            if let expert = entry.role.expert { experts = Swift.max(experts, expert + 1) }
        }
        self.experts = experts
        self.offsets = offsets
        self.gradientOffsets = gradientOffsets
        trains = !gradientOffsets.isEmpty
    }
}

/// A sparse layer's router and experts (its weights, or their gradients: nil where frozen).
public struct ExpertTensors<Pointer> {
    public let router: Pointer
    /// By expert.
    public let gate, up, down: [Pointer]
    /// Qwen2-MoE's shared expert, if the layer has one.
    public let shared: SharedExpert<Pointer>?
}

/// A shared expert's SwiGLU projections and its sigmoid gate [1, C].
public struct SharedExpert<Pointer> {
    public let gate, up, down, scale: Pointer
}

public typealias ExpertWeights = ExpertTensors<UnsafeMutablePointer<Float>>

/// A layer's MLP: dense, or routed experts.
public enum FeedForward<Pointer> {
    case dense(gate: Pointer, up: Pointer, down: Pointer)
    case experts(ExpertTensors<Pointer>)

    /// Reads each tensor by role.
    init(experts: Int, sharedExpert: Bool, _ pointer: (TensorRole) -> Pointer) {
        self = experts == 0
            ? .dense(gate: pointer(.gate), up: pointer(.up), down: pointer(.down))
            : .experts(ExpertTensors(router: pointer(.router), gate: (0..<experts).map { pointer(.expertGate($0)) },
                                     up: (0..<experts).map { pointer(.expertUp($0)) },
                                     down: (0..<experts).map { pointer(.expertDown($0)) },
                                     shared: sharedExpert ? SharedExpert(gate: pointer(.sharedGate), up: pointer(.sharedUp),
                                                                         down: pointer(.sharedDown), scale: pointer(.sharedExpertGate)) : nil))
    }
}

/// One decoder layer's tensors (its weights, or their gradients: same layout), by role. Biases
/// and head norms are nil where the family has none.
public struct LayerWeights {
    public let inputNorm, query, key, value, output, postAttentionNorm: UnsafeMutablePointer<Float>
    public let feedForward: FeedForward<UnsafeMutablePointer<Float>>
    public let queryBias, keyBias, valueBias, queryNorm, keyNorm: UnsafeMutablePointer<Float>?
    /// The layer's LoRA adapters (from its adapter block), if the model has any.
    public var adapters: LayerAdapters?

    public init(block: UnsafeMutablePointer<Float>, offsets: LayerOffsets) {
        func at(_ role: TensorRole) -> UnsafeMutablePointer<Float> {
            guard let offset = offsets.offsets[role] else { preconditionFailure("a decoder layer has no \(role)") }
            return block + offset
        }
        func optional(_ role: TensorRole) -> UnsafeMutablePointer<Float>? { offsets.offsets[role].map { block + $0 } }
        (inputNorm, query, key, value, output) = (at(.inputNorm), at(.query), at(.key), at(.value), at(.output))
        postAttentionNorm = at(.postAttentionNorm)
        feedForward = FeedForward(experts: offsets.experts, sharedExpert: offsets.offsets[.sharedGate] != nil, at)
        (queryBias, keyBias, valueBias) = (optional(.queryBias), optional(.keyBias), optional(.valueBias))
        (queryNorm, keyNorm) = (optional(.queryNorm), optional(.keyNorm))
    }

    /// The dense MLP's projections (a layer without experts).
    var denseMLP: (gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, down: UnsafeMutablePointer<Float>) {
        guard case .dense(let gate, let up, let down) = feedForward else { preconditionFailure("a sparse layer has no dense MLP") }
        return (gate, up, down)
    }
}

/// One decoder layer's gradients, as `LayerWeights`, nil for a tensor the layer lacks or that is
/// frozen (its weight-gradient kernel is skipped). A layer with no tensor that trains acquires
/// no block.
struct LayerGradients {
    let inputNorm, query, key, value, output, postAttentionNorm: UnsafeMutablePointer<Float>?
    let feedForward: FeedForward<UnsafeMutablePointer<Float>?>
    let queryBias, keyBias, valueBias, queryNorm, keyNorm: UnsafeMutablePointer<Float>?

    init(block: UnsafeMutablePointer<Float>?, offsets: LayerOffsets) {
        func at(_ role: TensorRole) -> UnsafeMutablePointer<Float>? {
            guard let block, let offset = offsets.gradientOffsets[role] else { return nil }
            return block + offset
        }
        (inputNorm, query, key, value, output) = (at(.inputNorm), at(.query), at(.key), at(.value), at(.output))
        postAttentionNorm = at(.postAttentionNorm)
        feedForward = FeedForward(experts: offsets.experts, sharedExpert: offsets.offsets[.sharedGate] != nil, at)
        (queryBias, keyBias, valueBias) = (at(.queryBias), at(.keyBias), at(.valueBias))
        (queryNorm, keyNorm) = (at(.queryNorm), at(.keyNorm))
    }
}
