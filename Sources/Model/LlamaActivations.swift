import Tensors

/// Everything `LlamaModel` computes for one micro-batch, carved out of one allocation made at
/// init: the saved activations forward writes and backward reads, and the gradient scratch
/// backward works in. Nothing is allocated per step.
///
/// Sizes, with N = microBatchSize × sequenceLength tokens, C = hidden_size, I =
/// intermediate_size, V = vocab_size, Q = num_attention_heads × head_dim, K =
/// num_key_value_heads × head_dim, H = num_attention_heads, L = num_hidden_layers, and S = L saved
/// layers (S = 1 with recomputation, whose one set is reused by every layer):
///
///     residual stream     (L + 1)·N·C
///     saved layers        S·N·(3C + 2Q + 2K + 3I + H + 2)
///     head                N·(C + V + 3)
///     gradient scratch    N·(2C + 3I + 3Q + 3K)
///
/// (`LlamaActivations.elementCount`), fp32, plus 3·N Int32 for tokens, targets and positions.
/// The logits, N·V, are usually the largest single view; backward turns them into their own
/// gradient in place.
final class LlamaActivations {
    /// One decoder layer's saved activations; its input and output are residual-stream views.
    struct Layer {
        /// [N, C] input_layernorm(x)
        let attentionNorm: UnsafeMutablePointer<Float>
        /// [N, Q] q_proj output after RoPE
        let query: UnsafeMutablePointer<Float>
        /// [N, K] k_proj output after RoPE
        let key: UnsafeMutablePointer<Float>
        /// [N, K] v_proj output
        let value: UnsafeMutablePointer<Float>
        /// [N, Q] attention output, o_proj's input
        let attentionOutput: UnsafeMutablePointer<Float>
        /// [N, C] h = x + o_proj(attention): the stream between the two sublayers
        let attentionResidual: UnsafeMutablePointer<Float>
        /// [N, C] post_attention_layernorm(h)
        let mlpNorm: UnsafeMutablePointer<Float>
        /// [N, I] gate_proj output
        let gate: UnsafeMutablePointer<Float>
        /// [N, I] up_proj output
        let up: UnsafeMutablePointer<Float>
        /// [N, I] silu(gate) · up, down_proj's input
        let mlpActivation: UnsafeMutablePointer<Float>
        /// [B, H, T] attention's log-sum-exp (with document masking: each document's [H, length]
        /// block at offset (b·T + start)·H)
        let attentionLogSumExp: UnsafeMutablePointer<Float>
        /// [N] 1/rms of input_layernorm's rows
        let attentionRstd: UnsafeMutablePointer<Float>
        /// [N] 1/rms of post_attention_layernorm's rows
        let mlpRstd: UnsafeMutablePointer<Float>
    }

    let arena: Tensor
    /// Layer l's input is `residual(l)`, its output `residual(l + 1)`; `residual(0)` is the
    /// embedding output and `residual(L)` the final norm's input.
    private let residualStream: UnsafeMutablePointer<Float>
    private let residualSize: Int
    /// L sets, or one reused by every layer when recomputing.
    private let savedLayers: [Layer]

    /// [N, C] model.norm output, lm_head's input
    let finalNorm: UnsafeMutablePointer<Float>
    /// [N, V] logits; after backward, their gradient
    let logits: UnsafeMutablePointer<Float>

    /// [N, C] gradient of the residual stream at the point backward has reached
    let residualGradient: UnsafeMutablePointer<Float>
    /// [N, C] gradient of a norm's output (final norm, post-attention norm, input norm in turn)
    let normGradient: UnsafeMutablePointer<Float>
    /// [N, I] gradients of down_proj's input, of gate and of up
    let mlpActivationGradient: UnsafeMutablePointer<Float>
    let gateGradient: UnsafeMutablePointer<Float>
    let upGradient: UnsafeMutablePointer<Float>
    /// [N, Q] gradient of o_proj's input
    let attentionOutputGradient: UnsafeMutablePointer<Float>
    /// [N, Q], [N, K], [N, K] gradients of the rotated query and key, and of the value
    let queryGradient: UnsafeMutablePointer<Float>
    let keyGradient: UnsafeMutablePointer<Float>
    let valueGradient: UnsafeMutablePointer<Float>
    /// [N, Q], [N, K] gradients of q_proj's and k_proj's outputs (before RoPE)
    let queryProjectionGradient: UnsafeMutablePointer<Float>
    let keyProjectionGradient: UnsafeMutablePointer<Float>

    /// [N] model.norm's 1/rms, the loss per token (0 where ignored), and its log-sum-exp
    let finalRstd: UnsafeMutablePointer<Float>
    let losses: UnsafeMutablePointer<Float>
    let lossLogSumExp: UnsafeMutablePointer<Float>

    /// [N] each: copies of the step's inputs, which backward and recomputation read again.
    let tokens: UnsafeMutablePointer<Int32>
    let targets: UnsafeMutablePointer<Int32>
    let positions: UnsafeMutablePointer<Int32>

    /// Floats in the arena (the formula in the type's comment).
    static func elementCount(config: LlamaConfig, tokenCount: Int, recompute: Bool) -> Int {
        let (c, i, v, h) = (config.hiddenSize, config.intermediateSize, config.vocabSize, config.numAttentionHeads)
        let q = config.numAttentionHeads * config.headDim
        let k = config.numKeyValueHeads * config.headDim
        let layerCount = config.numHiddenLayers
        let savedLayerCount = recompute ? 1 : layerCount
        let perToken = (layerCount + 1) * c
            + savedLayerCount * (3 * c + 2 * q + 2 * k + 3 * i + h + 2)
            + (c + v + 3)
            + (2 * c + 3 * i + 3 * q + 3 * k)
        return tokenCount * perToken
    }

    init(config: LlamaConfig, microBatchSize: Int, sequenceLength: Int, recompute: Bool) {
        let n = microBatchSize * sequenceLength
        let (c, i, v, h) = (config.hiddenSize, config.intermediateSize, config.vocabSize, config.numAttentionHeads)
        let q = config.numAttentionHeads * config.headDim
        let k = config.numKeyValueHeads * config.headDim
        let count = LlamaActivations.elementCount(config: config, tokenCount: n, recompute: recompute)
        arena = Tensor(shape: [count])
        // Large views first, the [N]-sized ones last, so the large ones start on 64-byte
        // boundaries whenever N·C, N·I… are multiples of 16.
        var next = arena.pointer
        func take(_ size: Int) -> UnsafeMutablePointer<Float> {
            defer { next += size }
            return next
        }
        residualSize = n * c
        residualStream = take((config.numHiddenLayers + 1) * n * c)
        let savedLayerCount = recompute ? 1 : config.numHiddenLayers
        var layers: [Layer] = []
        for _ in 0..<savedLayerCount {
            layers.append(Layer(
                attentionNorm: take(n * c), query: take(n * q), key: take(n * k), value: take(n * k),
                attentionOutput: take(n * q), attentionResidual: take(n * c), mlpNorm: take(n * c),
                gate: take(n * i), up: take(n * i), mlpActivation: take(n * i),
                attentionLogSumExp: take(n * h), attentionRstd: take(n), mlpRstd: take(n)))
        }
        savedLayers = layers
        finalNorm = take(n * c)
        logits = take(n * v)
        residualGradient = take(n * c)
        normGradient = take(n * c)
        mlpActivationGradient = take(n * i)
        gateGradient = take(n * i)
        upGradient = take(n * i)
        attentionOutputGradient = take(n * q)
        queryGradient = take(n * q)
        keyGradient = take(n * k)
        valueGradient = take(n * k)
        queryProjectionGradient = take(n * q)
        keyProjectionGradient = take(n * k)
        finalRstd = take(n)
        losses = take(n)
        lossLogSumExp = take(n)
        precondition(next - arena.pointer == count, "activation views cover \(next - arena.pointer) of \(count) floats")
        tokens = .allocate(capacity: Swift.max(3 * n, 1))
        tokens.initialize(repeating: 0, count: Swift.max(3 * n, 1))
        targets = tokens + n
        positions = tokens + 2 * n
    }

    deinit {
        tokens.deallocate()
    }

    func residual(_ index: Int) -> UnsafeMutablePointer<Float> {
        residualStream + index * residualSize
    }

    /// The saved activations of layer `index` (the one shared set when recomputing).
    func layer(_ index: Int) -> Layer {
        savedLayers[savedLayers.count == 1 ? 0 : index]
    }
}
