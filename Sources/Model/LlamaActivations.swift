import Tensors

/// Everything `LlamaModel` computes for one micro-batch, carved out of one allocation made at
/// init: the saved activations forward writes and backward reads, and the gradient scratch
/// backward works in. Nothing is allocated per step.
///
/// Sizes, with N = microBatchSize × sequenceLength tokens, C = hidden_size, I =
/// intermediate_size, V = vocab_size, Q = num_attention_heads × head_dim, K =
/// num_key_value_heads × head_dim, H = num_attention_heads, L = the layers held, and S = L saved
/// layers (S = 1 with recomputation, whose one set is reused by every layer); M = N rows of the
/// residual stream held here (N / tp with sequence parallelism, else N):
///
///     residual stream     (L + 1)·M·C
///     saved layers        S·(N·(2C + 2Q + 2K + 3I + H) + M·(C + 2)), + S·N·(Q + K + H + H_kv) with
///                         QK-norm (H_kv = num_key_value_heads), + S·N·r·(adapted projections) with
///                         LoRA, and N·r of gradient scratch; with DoRA + S·(N + 1)·ΣO (ΣO: the
///                         adapted projections' outputs) saved, O_max + 256·I_max of norm scratch
///                         and N·O_max of gradient scratch; with LoRA dropout 2·N·I_max of scratch
///                         (O_max, I_max: the widest adapted output and input)
///     head                N·(C + V) + M (only with the head: the last pipeline stage), + 2N
///     gradient scratch    N·(C + 3I + 3Q + 3K) + M·C
///     sequence parallel   N·C + 2·M·C  (only with sequence parallelism)
///
/// (`LlamaActivations.elementCount`), fp32, plus 3·N Int32 for tokens, targets and positions.
/// A forward-only model (references, reward scoring, evaluation) keeps two residual-stream
/// slices that layers alternate between, one set of saved layer activations, and no gradient
/// scratch.
/// The logits, N·V, are usually the largest single view; backward turns them into their own
/// gradient in place.
final class LlamaActivations {
    /// One decoder layer's saved activations; its input and output are residual-stream views.
    struct Layer {
        /// [N, C] input_layernorm(x) (all rows, gathered with sequence parallelism)
        let attentionNorm: UnsafeMutablePointer<Float>
        /// [N, Q] q_proj output after RoPE
        let query: UnsafeMutablePointer<Float>
        /// [N, K] k_proj output after RoPE
        let key: UnsafeMutablePointer<Float>
        /// [N, K] v_proj output
        let value: UnsafeMutablePointer<Float>
        /// [N, Q] attention output, o_proj's input
        let attentionOutput: UnsafeMutablePointer<Float>
        /// [M, C] h = x + o_proj(attention): the stream between the two sublayers
        let attentionResidual: UnsafeMutablePointer<Float>
        /// [N, C] post_attention_layernorm(h) (all rows)
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
        /// [M] 1/rms of input_layernorm's rows
        let attentionRstd: UnsafeMutablePointer<Float>
        /// [M] 1/rms of post_attention_layernorm's rows
        let mlpRstd: UnsafeMutablePointer<Float>
        /// With per-head QK-norm only (qwen3; empty otherwise): [N, Q] and [N, K] q_proj and
        /// k_proj outputs before the norm, and [N·H], [N·H_kv] 1/rms of each head's values.
        let queryProjection: UnsafeMutablePointer<Float>
        let keyProjection: UnsafeMutablePointer<Float>
        let queryRstd: UnsafeMutablePointer<Float>
        let keyRstd: UnsafeMutablePointer<Float>
        /// With LoRA only: [targets, N, r] each adapted projection's input · Aᵀ, in
        /// `LoRAConfig.targets` order.
        let adapterIntermediate: UnsafeMutablePointer<Float>
        /// With DoRA only: each adapted projection's [N, O] direction (x̃·(W + s·B·A)ᵀ / norm)
        /// and [O] scale (m / norm), at `adapterOutputStarts` × N and × 1.
        let adapterDirection: UnsafeMutablePointer<Float>
        let adapterScale: UnsafeMutablePointer<Float>
    }

    /// Where each adapted projection's outputs start in `adapterDirection` (in rows of N) and
    /// `adapterScale`: the outputs of the targets before it.
    let adapterOutputStarts: [Projection: Int]
    /// DoRA: [O_max] squared row norms of W + s·B·A, and [256, I_max] rows of it being formed.
    let adapterNorms: UnsafeMutablePointer<Float>
    let adapterWeightRows: UnsafeMutablePointer<Float>
    /// LoRA dropout, training only: [N, I_max] the dropped input, and its gradient.
    let adapterInput: UnsafeMutablePointer<Float>
    let adapterInputGradient: UnsafeMutablePointer<Float>
    /// DoRA, training only: [N, O_max] the gradient of the direction product (scale ⊙ g).
    let adapterOutputGradient: UnsafeMutablePointer<Float>

    let arena: Tensor
    /// Layer l's input is `residual(l)`, its output `residual(l + 1)`; `residual(0)` is the
    /// embedding output and `residual(L)` the final norm's input.
    private let residualStream: UnsafeMutablePointer<Float>
    private let residualSize: Int
    /// Residual-stream slices held: L + 1, or 2 for a forward-only model.
    private let residualSlices: Int
    /// L sets, or one reused by every layer when recomputing.
    private let savedLayers: [Layer]

    /// [N, C] model.norm output, lm_head's input (all rows)
    let finalNorm: UnsafeMutablePointer<Float>
    /// [N, V] logits; after backward, their gradient. With a scalar head: [N, labels] scores.
    let logits: UnsafeMutablePointer<Float>

    /// [M, C] gradient of the residual stream at the point backward has reached
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
    /// [N, r] a LoRA adapter's intermediate gradient (LoRA only)
    let adapterGradient: UnsafeMutablePointer<Float>

    /// Sequence parallelism's scratch (nil without it): [M, C] a norm's output before it is
    /// gathered, [M, C] a norm's output gradient after it is reduce-scattered, and [N, C] a
    /// row-parallel projection's partial output before it is reduce-scattered, or the stream's
    /// gradient gathered for the projections' backward.
    let localNorm: UnsafeMutablePointer<Float>?
    let localNormGradient: UnsafeMutablePointer<Float>?
    let fullRows: UnsafeMutablePointer<Float>?

    /// [M] model.norm's 1/rms; [N] the loss per token (0 where ignored), and its log-sum-exp
    let finalRstd: UnsafeMutablePointer<Float>
    let losses: UnsafeMutablePointer<Float>
    let lossLogSumExp: UnsafeMutablePointer<Float>

    /// [N] each: copies of the step's inputs, which backward and recomputation read again.
    let tokens: UnsafeMutablePointer<Int32>
    let targets: UnsafeMutablePointer<Int32>
    let positions: UnsafeMutablePointer<Int32>

    /// The adapted projections' output total, widest output and widest input (0 without LoRA).
    private static func adapterSizes(_ config: LlamaConfig, _ lora: LoRAConfig?) -> (outputs: Int, maxOutput: Int, maxInput: Int) {
        let shapes = lora?.targets.map { $0.shape(config) } ?? []
        return (shapes.reduce(0) { $0 + $1.output }, shapes.map(\.output).max() ?? 0, shapes.map(\.input).max() ?? 0)
    }

    /// Floats of the adapters' views beyond A's intermediate (DoRA and dropout): per saved layer,
    /// and once.
    private static func adapterExtras(_ config: LlamaConfig, _ lora: LoRAConfig?, n: Int, forwardOnly: Bool)
        -> (perLayer: Int, once: Int) {
        guard let lora else { return (0, 0) }
        let (outputs, maxOutput, maxInput) = adapterSizes(config, lora)
        let dora = lora.weightDecomposed ? 1 : 0
        let dropout = lora.dropout > 0 && !forwardOnly ? 1 : 0
        let training = forwardOnly ? 0 : 1
        return (dora * (n + 1) * outputs,
                dora * (maxOutput + WeightDecomposedAdapter.rowBlock * maxInput + training * n * maxOutput) + dropout * 2 * n * maxInput)
    }

    /// Floats in the arena (the formula in the type's comment).
    static func elementCount(config: LlamaConfig, tokenCount n: Int, localTokenCount m: Int, layerCount: Int,
                             hasHead: Bool, recompute: Bool, forwardOnly: Bool = false, lora: LoRAConfig? = nil) -> Int {
        let (c, i, v, h) = (config.hiddenSize, config.denseIntermediateSize, config.headWidth, config.numAttentionHeads)
        let q = config.numAttentionHeads * config.headDim
        let k = config.numKeyValueHeads * config.headDim
        let savedLayerCount = recompute || forwardOnly ? Swift.min(1, layerCount) : layerCount
        let residualSlices = forwardOnly ? Swift.min(2, layerCount + 1) : layerCount + 1
        let headNorm = config.queryKeyNorm ? n * (q + k + h + config.numKeyValueHeads) : 0
        let adapters = lora.map { n * $0.rank * $0.targets.count } ?? 0
        let gradientScratch = forwardOnly ? 0 : n * (c + 3 * i + 3 * q + 3 * k) + m * c + (m < n ? m * c : 0) + n * (lora?.rank ?? 0)
        let extras = adapterExtras(config, lora, n: n, forwardOnly: forwardOnly)
        return residualSlices * m * c
            + savedLayerCount * (n * (2 * c + 2 * q + 2 * k + 3 * i + h) + m * (c + 2) + headNorm + adapters + extras.perLayer)
            + extras.once
            + (hasHead ? n * (c + v) + m : 0) + 2 * n
            + gradientScratch
            + (m < n ? n * c + m * c : 0)
    }

    init(config: LlamaConfig, microBatchSize: Int, sequenceLength: Int, localTokenCount m: Int, layerCount: Int,
         hasHead: Bool, recompute: Bool, forwardOnly: Bool = false, lora: LoRAConfig? = nil) {
        let n = microBatchSize * sequenceLength
        let (c, i, v, h) = (config.hiddenSize, config.denseIntermediateSize, config.headWidth, config.numAttentionHeads)
        let q = config.numAttentionHeads * config.headDim
        let k = config.numKeyValueHeads * config.headDim
        let count = LlamaActivations.elementCount(config: config, tokenCount: n, localTokenCount: m, layerCount: layerCount,
                                                  hasHead: hasHead, recompute: recompute, forwardOnly: forwardOnly, lora: lora)
        arena = Tensor(shape: [count])
        // Large views first, the [N]-sized ones last, so the large ones start on 64-byte
        // boundaries whenever N·C, N·I… are multiples of 16.
        var next = arena.pointer
        func take(_ size: Int) -> UnsafeMutablePointer<Float> {
            defer { next += size }
            return next
        }
        residualSize = m * c
        residualSlices = forwardOnly ? Swift.min(2, layerCount + 1) : layerCount + 1
        residualStream = take(residualSlices * m * c)
        let savedLayerCount = recompute || forwardOnly ? Swift.min(1, layerCount) : layerCount
        var layers: [Layer] = []
        let headNorm = config.queryKeyNorm ? 1 : 0
        let (adapterOutputs, maxOutput, maxInput) = Self.adapterSizes(config, lora)
        let dora = lora?.weightDecomposed == true ? 1 : 0
        var starts: [Projection: Int] = [:], start = 0
        for projection in lora?.targets ?? [] {
            starts[projection] = start
            start += projection.shape(config).output
        }
        adapterOutputStarts = starts
        for _ in 0..<savedLayerCount {
            layers.append(Layer(
                attentionNorm: take(n * c), query: take(n * q), key: take(n * k), value: take(n * k),
                attentionOutput: take(n * q), attentionResidual: take(m * c), mlpNorm: take(n * c),
                gate: take(n * i), up: take(n * i), mlpActivation: take(n * i),
                attentionLogSumExp: take(n * h), attentionRstd: take(m), mlpRstd: take(m),
                queryProjection: take(headNorm * n * q), keyProjection: take(headNorm * n * k),
                queryRstd: take(headNorm * n * h), keyRstd: take(headNorm * n * config.numKeyValueHeads),
                adapterIntermediate: take(n * (lora.map { $0.rank * $0.targets.count } ?? 0)),
                adapterDirection: take(dora * n * adapterOutputs), adapterScale: take(dora * adapterOutputs)))
        }
        savedLayers = layers
        finalNorm = take(hasHead ? n * c : 0)
        logits = take(hasHead ? n * v : 0)
        // A forward-only model has no gradient scratch: these views are empty.
        let g = forwardOnly ? 0 : 1
        residualGradient = take(g * m * c)
        normGradient = take(g * n * c)
        mlpActivationGradient = take(g * n * i)
        gateGradient = take(g * n * i)
        upGradient = take(g * n * i)
        attentionOutputGradient = take(g * n * q)
        queryGradient = take(g * n * q)
        keyGradient = take(g * n * k)
        valueGradient = take(g * n * k)
        queryProjectionGradient = take(g * n * q)
        keyProjectionGradient = take(g * n * k)
        adapterGradient = take(g * n * (lora?.rank ?? 0))
        let dropout = (lora?.dropout ?? 0) > 0 ? g : 0
        adapterNorms = take(dora * maxOutput)
        adapterWeightRows = take(dora * WeightDecomposedAdapter.rowBlock * maxInput)
        adapterOutputGradient = take(g * dora * n * maxOutput)
        adapterInput = take(dropout * n * maxInput)
        adapterInputGradient = take(dropout * n * maxInput)
        let sequenceParallel = m < n
        fullRows = sequenceParallel ? take(n * c) : nil
        localNorm = sequenceParallel ? take(m * c) : nil
        localNormGradient = sequenceParallel ? take(g * m * c) : nil
        finalRstd = take(hasHead ? m : 0)
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
        residualStream + index % residualSlices * residualSize
    }

    /// The saved activations of layer `index` (the one shared set when recomputing).
    func layer(_ index: Int) -> Layer {
        savedLayers[savedLayers.count == 1 ? 0 : index]
    }
}
