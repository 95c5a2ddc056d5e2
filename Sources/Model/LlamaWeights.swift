/// Where each tensor of a decoder layer sits inside the layer's block, in floats from the block's
/// first element (the pointer `ParameterAccess` hands out). Read once from the layout, by name.
struct LayerOffsets {
    let inputNorm, query, key, value, output, postAttentionNorm, gate, up, down: Int
    /// The offsets of the tensors that train (nil for frozen ones): where gradients go.
    let gradients: OptionalOffsets
    /// Whether any tensor of the layer trains.
    let trains: Bool

    struct OptionalOffsets {
        let inputNorm, query, key, value, output, postAttentionNorm, gate, up, down: Int?
    }

    init(layout: ParameterLayout, layer: Int) {
        let start = layout.range(of: .layer(layer)).lowerBound
        func offset(_ suffix: String) -> Int {
            let name = "model.layers.\(layer).\(suffix)"
            guard let entry = layout.entry(named: name) else { preconditionFailure("the layout has no \(name)") }
            return entry.offset - start
        }
        func gradient(_ suffix: String) -> Int? {
            layout.trains("model.layers.\(layer).\(suffix)") ? offset(suffix) : nil
        }
        gradients = OptionalOffsets(
            inputNorm: gradient("input_layernorm.weight"), query: gradient("self_attn.q_proj.weight"),
            key: gradient("self_attn.k_proj.weight"), value: gradient("self_attn.v_proj.weight"),
            output: gradient("self_attn.o_proj.weight"), postAttentionNorm: gradient("post_attention_layernorm.weight"),
            gate: gradient("mlp.gate_proj.weight"), up: gradient("mlp.up_proj.weight"), down: gradient("mlp.down_proj.weight"))
        trains = layout.trains(.layer(layer))
        inputNorm = offset("input_layernorm.weight")
        query = offset("self_attn.q_proj.weight")
        key = offset("self_attn.k_proj.weight")
        value = offset("self_attn.v_proj.weight")
        output = offset("self_attn.o_proj.weight")
        postAttentionNorm = offset("post_attention_layernorm.weight")
        gate = offset("mlp.gate_proj.weight")
        up = offset("mlp.up_proj.weight")
        down = offset("mlp.down_proj.weight")
    }
}

/// One decoder layer's tensors (its weights, or their gradients: same layout), HF shapes:
///
///     inputNorm, postAttentionNorm   [C]
///     query                          [Q, C]    q_proj, Q = num_attention_heads × head_dim
///     key, value                     [K, C]    k_proj, v_proj, K = num_key_value_heads × head_dim
///     output                         [C, Q]    o_proj
///     gate, up                       [I, C]    gate_proj, up_proj
///     down                           [C, I]    down_proj
struct LayerWeights {
    let inputNorm, query, key, value, output, postAttentionNorm, gate, up, down: UnsafeMutablePointer<Float>

    init(block: UnsafeMutablePointer<Float>, offsets: LayerOffsets) {
        inputNorm = block + offsets.inputNorm
        query = block + offsets.query
        key = block + offsets.key
        value = block + offsets.value
        output = block + offsets.output
        postAttentionNorm = block + offsets.postAttentionNorm
        gate = block + offsets.gate
        up = block + offsets.up
        down = block + offsets.down
    }
}

/// One decoder layer's gradients, as `LayerWeights`, nil for a frozen tensor (its
/// weight-gradient kernel is skipped). A layer with no tensor that trains acquires no block.
struct LayerGradients {
    let inputNorm, query, key, value, output, postAttentionNorm, gate, up, down: UnsafeMutablePointer<Float>?

    init(block: UnsafeMutablePointer<Float>?, offsets: LayerOffsets) {
        let g = offsets.gradients
        func at(_ offset: Int?) -> UnsafeMutablePointer<Float>? {
            guard let block, let offset else { return nil }
            return block + offset
        }
        inputNorm = at(g.inputNorm)
        query = at(g.query)
        key = at(g.key)
        value = at(g.value)
        output = at(g.output)
        postAttentionNorm = at(g.postAttentionNorm)
        gate = at(g.gate)
        up = at(g.up)
        down = at(g.down)
    }
}

/// The head block's tensors: `model.norm.weight` [C], then (untied) `lm_head.weight` [V, C].
/// Tied, lm_head is the embedding table and lives in the embedding block.
struct HeadOffsets {
    let norm: Int
    let languageModelHead: Int?

    init(layout: ParameterLayout) {
        let start = layout.range(of: .head).lowerBound
        guard let norm = layout.entry(named: "model.norm.weight") else { preconditionFailure("the layout has no model.norm.weight") }
        self.norm = norm.offset - start
        languageModelHead = layout.entry(named: "lm_head.weight").map { $0.offset - start }
    }
}
