import Foundation
import Tensors

/// A Llama decoder on one device, as transformers' `LlamaForCausalLM` computes it, with explicit
/// forward and backward passes (llm.c style: plain loops over layers, each step a kernel pair from
/// `Tensors`).
///
///     embed_tokens → L × [ x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))), n = input_layernorm(x)
///                          h + down_proj(silu(gate_proj(m)) · up_proj(m)),                     m = post_attention_layernorm(h) ]
///                  → norm → lm_head (or the embedding table when tied) → softmax cross-entropy
///
/// The model reads only the sizes in its config, so a parallel layer may hand it a config with
/// local (sharded) sizes. It owns no parameters: it reaches them, and writes their gradients,
/// only through a `ParameterAccess`, one block at a time, in this order:
///
/// - forward: `embedding`, `layer(0)` … `layer(L−1)`, `head` — each `acquireParameters` → use →
///   `releaseParameters`; a tied head also acquires and releases `embedding` inside its bracket.
/// - backward: `head` (acquire parameters, [tied: acquire `embedding` parameters], acquire
///   gradients, [tied: acquire `embedding` gradients], compute, release `head` gradients,
///   [tied: release `embedding` parameters], release `head` parameters); then `layer(L−1)` …
///   `layer(0)` (acquire parameters, recompute the layer's forward if recomputing, acquire
///   gradients, compute, release gradients, release parameters); then `embedding` (acquire
///   gradients unless the tied head already holds them, compute, release gradients). Backward
///   never reads the embedding table itself, so an untied embedding's parameters are not acquired.
///
/// Activations live in one arena sized at init (`activationCount`), so a step allocates nothing.
/// Not thread-safe: one model serves one sequence of forward/backward calls.
public final class LlamaModel {
    public let config: LlamaConfig
    public let microBatchSize: Int
    public let sequenceLength: Int
    /// Whether forward keeps only each layer's input and backward recomputes the rest of the layer.
    public let recompute: Bool
    /// Whether the model only runs forward (references, scoring, evaluation): activations are
    /// sized for inference (`LlamaActivations`) and `backward` is refused.
    public let forwardOnly: Bool
    /// Whether attention is masked per document: a token attends only to earlier tokens of its
    /// own document. Documents are where positions restart (position ≠ previous position + 1),
    /// the rule transformers uses for packed sequences.
    public let documentMasking: Bool
    public let threads: KernelThreads
    /// The parameter layout this model expects of every `ParameterAccess` it is given.
    public let layout: ParameterLayout
    /// When set, every kernel call's time is added to it (`meshlm bench train`'s breakdown).
    public var profile: StepProfile?
    /// Where activations cross tensor-parallel ranks (identity on one device).
    public let regions: any TensorParallelRegions
    /// Rows of the residual stream this rank holds: B·T, or its share with sequence parallelism.
    public let localTokenCount: Int

    let rope: RoPETable
    let activations: LlamaActivations
    /// What each layer holds and the order its forward runs in (shared with serving), by local
    /// layer index.
    public let decoderLayers: [DecoderLayer]
    /// The sparse layers' routing and expert activations (nil without experts in this part).
    let expertActivations: ExpertActivations?
    /// What the router losses (load balancing, z-loss) are multiplied by in backward, beside
    /// their coefficients: 1 / the micro-batches of the global batch, set by the trainer, so the
    /// step's gradient is that of the mean over micro-batches of each one's router losses.
    public var routerLossScale: Float = 1
    /// The router's figures summed over forwards since the last `resetRouterTotals()` (empty
    /// for a dense model).
    public private(set) var routerTotals = RouterTotals()

    public func resetRouterTotals() {
        routerTotals = RouterTotals()
    }
    /// The LoRA adapters on the layers' projections, if any (each layer's in `.adapter(i)`).
    public let lora: LoRAConfig?
    /// QLoRA: the layer projections' NF4 copies, which their products read instead of the f32
    /// weights (released from the arena); set once the base is loaded (`lora.quantize_base`).
    public var quantizedBase: QuantizedBase?
    /// The dropout masks of the next training forward (`lora_dropout` > 0), set by the trainer
    /// before each micro-batch's forward; the backward after that forward (and its recomputation)
    /// redraws the same. Nil: no dropout (evaluation, scoring; as PEFT in eval mode).
    public var adapterDropout: AdapterDropoutDraw?
    /// The layers (and embedding, head) this model runs: all of them, or a pipeline stage's.
    public let part: ModelPart
    /// Offsets of `part.layers` in their blocks, by local layer index.
    let layerOffsets: [LayerOffsets]
    /// With LoRA: offsets of each local layer's adapters in its adapter block.
    let adapterOffsets: [AdapterOffsets]?
    /// Nil when the part has no head.
    let headOffsets: HeadOffsets?
    let epsilon: Float
    /// Per-row statistics of the vocabulary-parallel loss ([2, B·T]); empty without a split vocabulary.
    let vocabularyStatistics: Tensor
    /// [B·T] log p(target) of the last forward with targets (0 where ignored); empty without the head.
    private let logProbabilities: Tensor
    /// [B·T] ∂loss/∂log p(target) that backward starts from; empty without the head.
    private let logProbabilityGradients: Tensor
    /// [B·T, labels] ∂loss/∂score that a scalar head's backward starts from; empty otherwise.
    private let scoreGradients: Tensor

    private enum State { case empty, logits, loss }
    /// What the arena holds: backward needs a forward with targets since the last backward.
    private var state = State.empty

    /// - Parameters:
    ///   - config: sizes as this device sees them (validated by the caller).
    ///   - microBatchSize, sequenceLength: B and T of every call's [B, T] inputs.
    ///   - recompute: per-layer activation recomputation (less memory, one more layer forward
    ///     per layer in backward); results are bitwise the same either way.
    ///   - documentMasking: attention masked per document of a packed row (see the property).
    ///   - forwardOnly: no backward; activations sized for inference.
    ///   - frozen: names of tensors that do not train: backward skips their weight-gradient
    ///     kernels (input gradients still flow) and acquires no gradients for a block whose every
    ///     tensor is frozen. The `ParameterAccess` given must freeze the same ones.
    ///   - regions: the tensor-parallel hooks when `config` holds one rank's share of the model.
    ///   - part: a pipeline stage's layers (whole model by default); a part without the
    ///     embedding takes its input in `stageInput`, one without the head leaves its output in
    ///     `stageOutput` and takes the gradient of that output in `stageOutputGradient`.
    public init(config: LlamaConfig, microBatchSize: Int, sequenceLength: Int, recompute: Bool = false,
                documentMasking: Bool = false, forwardOnly: Bool = false, frozen: Set<String> = [],
                lora: LoRAConfig? = nil, threads: KernelThreads = .single,
                regions: any TensorParallelRegions = SingleDeviceRegions(), part: ModelPart? = nil) {
        precondition(microBatchSize >= 1 && sequenceLength >= 1,
                     "micro-batch size \(microBatchSize) and sequence length \(sequenceLength) must be at least 1")
        self.config = config
        self.microBatchSize = microBatchSize
        self.sequenceLength = sequenceLength
        self.recompute = recompute
        self.forwardOnly = forwardOnly
        self.documentMasking = documentMasking
        self.threads = threads
        self.regions = regions
        vocabularyStatistics = Tensor(shape: [regions.vocabularyStart == nil ? 0 : 2 * microBatchSize * sequenceLength])
        let headRows = (part ?? .whole(config)).hasHead ? microBatchSize * sequenceLength : 0
        logProbabilities = Tensor(shape: [config.hasScoreHead ? 0 : headRows])
        logProbabilityGradients = Tensor(shape: [config.hasScoreHead ? 0 : headRows])
        scoreGradients = Tensor(shape: [config.hasScoreHead ? headRows * config.numLabels : 0])
        localTokenCount = regions.localTokenCount(of: microBatchSize * sequenceLength)
        let part = part ?? .whole(config)
        self.part = part
        self.lora = lora
        let layout = ParameterLayout(config: config, part: part, lora: lora).freezing(frozen)
        self.layout = layout
        layerOffsets = part.layers.map { LayerOffsets(layout: layout, layer: $0) }
        adapterOffsets = lora.map { lora in part.layers.map { AdapterOffsets(layout: layout, layer: $0, lora: lora) } }
        headOffsets = part.hasHead ? HeadOffsets(layout: layout) : nil
        epsilon = Float(config.rmsNormEps)
        rope = RoPETable(config: config)
        decoderLayers = part.layers.map { DecoderLayer(config: config, layer: $0) }
        expertActivations = ExpertActivations(config: config, tokenCount: microBatchSize * sequenceLength, layers: part.layers,
                                              recompute: recompute, forwardOnly: forwardOnly)
        activations = LlamaActivations(config: config, microBatchSize: microBatchSize, sequenceLength: sequenceLength,
                                       localTokenCount: localTokenCount, layerCount: part.layers.count,
                                       hasHead: part.hasHead, recompute: recompute, forwardOnly: forwardOnly, lora: lora)
    }

    /// [M, C] a part without the embedding: where its input (the previous stage's output) goes
    /// before `forward`.
    public var stageInput: UnsafeMutablePointer<Float> { activations.residual(0) }
    /// [M, C] a part without the head: its output after `forward`.
    public var stageOutput: UnsafePointer<Float> { UnsafePointer(activations.residual(part.layers.count)) }
    /// [M, C] a part without the head: where the gradient of its output goes before `backward`.
    public var stageOutputGradient: UnsafeMutablePointer<Float> { activations.residualGradient }
    /// [M, C] a part without the embedding: the gradient of its input after `backward`.
    public var stageInputGradient: UnsafePointer<Float> { UnsafePointer(activations.residualGradient) }
    /// Floats in `stageInput` and the other stage views: the residual stream rows × hidden size.
    public var stageElementCount: Int { localTokenCount * config.hiddenSize }

    /// Floats in the activation arena of a model with these sizes (see `LlamaActivations`);
    /// `localTokenCount` is the residual stream's rows with sequence parallelism.
    public static func activationCount(config: LlamaConfig, microBatchSize: Int, sequenceLength: Int,
                                       localTokenCount: Int? = nil, part: ModelPart? = nil, recompute: Bool,
                                       forwardOnly: Bool = false, lora: LoRAConfig? = nil) -> Int {
        let n = microBatchSize * sequenceLength
        let part = part ?? .whole(config)
        return LlamaActivations.elementCount(config: config, tokenCount: n, localTokenCount: localTokenCount ?? n,
                                             layerCount: part.layers.count, hasHead: part.hasHead, recompute: recompute,
                                             forwardOnly: forwardOnly, lora: lora)
            + ExpertActivations.elementCount(config: config, tokenCount: n, sparseLayers: part.layers.count { config.isSparse(layer: $0) },
                                             recompute: recompute, forwardOnly: forwardOnly)
    }

    var tokenCount: Int { microBatchSize * sequenceLength }

    // MARK: Forward

    /// Runs the model and the loss over one micro-batch and returns the loss total (sum over
    /// counted targets, and their count). Each pointer is to B·T ids:
    ///
    ///     tokens     [B, T]  token ids
    ///     targets    [B, T]  the id each position should predict (usually the next token), or
    ///                        -100 (`CrossEntropy.defaultIgnoreIndex`) where nothing counts
    ///     positions  [B, T]  each token's position within its document, so packed documents
    ///                        restart RoPE at 0 (and, with `documentMasking`, mark boundaries)
    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, positions: UnsafePointer<Int32>,
                        parameters: any ParameterAccess) -> CrossEntropy.Total {
        forwardWithLoss(tokens, targets, positions, parameters)
    }

    /// `forward` on arrays of B·T ids each.
    @discardableResult
    public func forward(tokens: [Int32], targets: [Int32], positions: [Int32],
                        parameters: any ParameterAccess) -> CrossEntropy.Total {
        checkCount(tokens, "tokens")
        checkCount(targets, "targets")
        checkCount(positions, "positions")
        return forwardWithLoss(tokens, targets, positions, parameters)
    }

    /// Runs the model without a loss and returns the logits [B, T, V] (a scalar head's scores
    /// [B, T, labels]), a view into the arena that is valid until the next call on this model.
    public func logits(tokens: UnsafePointer<Int32>, positions: UnsafePointer<Int32>,
                       parameters: any ParameterAccess) -> UnsafeBufferPointer<Float> {
        forwardWithoutLoss(tokens, positions, parameters)
    }

    /// `logits` on arrays of B·T ids each, copied out.
    public func logits(tokens: [Int32], positions: [Int32], parameters: any ParameterAccess) -> [Float] {
        checkCount(tokens, "tokens")
        checkCount(positions, "positions")
        return Array(forwardWithoutLoss(tokens, positions, parameters))
    }

    /// The last forward's loss per token [B, T] (0 where the target is ignored).
    public var tokenLosses: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: activations.losses, count: tokenCount)
    }

    /// The last forward's log p(target) per token [B, T] (−`tokenLosses`; 0 where the target is
    /// ignored): what an objective turns into a loss. Needs the head.
    public var tokenLogProbabilities: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: logProbabilities.pointer, count: logProbabilities.count)
    }

    /// [B, T] ∂loss/∂log p(target) per token, written by the caller (an objective) between a
    /// forward with targets and `backward(parameters:)`; rows whose target is ignored are not read.
    public var logProbabilityGradient: UnsafeMutableBufferPointer<Float> {
        logProbabilityGradients.buffer
    }

    /// A scalar head's scores of the last forward, [B, T, labels] (every position; an objective
    /// reads the ones it wants, e.g. each sequence's last token). Empty with the LM head.
    public var scores: UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: activations.logits, count: config.hasScoreHead && part.hasHead ? tokenCount * config.numLabels : 0)
    }

    /// [B, T, labels] ∂loss/∂score, written by the caller between a forward and
    /// `backward(parameters:)` of a scalar-head model (zero where a score does not count).
    public var scoreGradient: UnsafeMutableBufferPointer<Float> {
        scoreGradients.buffer
    }

    /// Σ and count of log p(target) over the counted targets of each span of the last forward's
    /// [B·T] rows (a span is usually one sequence: see `MicroBatch.sequenceSpans`), summed in
    /// Double in row order.
    public func sequenceLogProbabilities(over spans: [Range<Int>]) -> [SequenceLogProbability] {
        precondition(part.hasHead, "log-probabilities need the model's head; this part is \(part)")
        let a = activations
        return spans.map { span in
            var total = SequenceLogProbability(sum: 0, count: 0)
            for row in span where a.targets[row] != CrossEntropy.defaultIgnoreIndex && !config.hasScoreHead {
                total.sum += Double(logProbabilities.pointer[row])
                total.count += 1
            }
            return total
        }
    }

    private func checkCount(_ values: [Int32], _ name: String) {
        precondition(values.count == tokenCount,
                     "\(name) holds \(values.count) ids; this model takes [\(microBatchSize), \(sequenceLength)]")
    }

    private func forwardWithLoss(_ tokens: UnsafePointer<Int32>, _ targets: UnsafePointer<Int32>,
                                 _ positions: UnsafePointer<Int32>, _ parameters: any ParameterAccess) -> CrossEntropy.Total {
        let a = activations
        a.tokens.update(from: tokens, count: tokenCount)
        a.targets.update(from: targets, count: tokenCount)
        a.positions.update(from: positions, count: tokenCount)
        forwardToLogits(parameters)
        var total = CrossEntropy.Total(lossSum: 0, targetCount: 0)
        state = .loss
        // The last pipeline stage computes the loss; a scalar head has scores, not a loss.
        guard part.hasHead, !config.hasScoreHead else { return total }
        timed(.crossEntropy, .forward) {
            if let start = regions.vocabularyStart {
                total = vocabularyParallelLoss(vocabularyStart: start)
            } else {
                total = CrossEntropy.forward(
                    losses: a.losses, logSumExp: a.lossLogSumExp, logits: a.logits, targets: a.targets,
                    rowCount: tokenCount, vocabularySize: config.vocabSize, threads: threads)
            }
        }
        for row in 0..<tokenCount { logProbabilities.pointer[row] = -a.losses[row] }
        return total
    }

    private func forwardWithoutLoss(_ tokens: UnsafePointer<Int32>, _ positions: UnsafePointer<Int32>,
                                    _ parameters: any ParameterAccess) -> UnsafeBufferPointer<Float> {
        precondition(part.hasHead, "logits need the model's head; this part is \(part)")
        let a = activations
        a.tokens.update(from: tokens, count: tokenCount)
        a.positions.update(from: positions, count: tokenCount)
        forwardToLogits(parameters)
        state = .logits
        return UnsafeBufferPointer(start: a.logits, count: tokenCount * config.headWidth)
    }

    private func forwardToLogits(_ parameters: any ParameterAccess) {
        checkLayout(parameters.layout)
        let a = activations
        let (n, c, v) = (tokenCount, config.hiddenSize, config.vocabSize)
        if part.hasEmbedding {
            let table = parameters.acquireParameters(.embedding)
            // Each tensor-parallel rank looks up only the tokens of its vocabulary slice.
            let embeddingOutput = partialOutput(for: a.residual(0))
            timed(.embedding, .forward) {
                if let quantized = quantizedBase?.embedding {
                    Embedding.forward(output: embeddingOutput, tokens: a.tokens, table: quantized,
                                      tokenCount: n, vocabularySize: v, hiddenSize: c, vocabularyStart: regions.vocabularyStart,
                                      threads: threads)
                } else {
                    Embedding.forward(output: embeddingOutput, tokens: a.tokens, table: table,
                                      tokenCount: n, vocabularySize: v, hiddenSize: c, vocabularyStart: regions.vocabularyStart,
                                      threads: threads)
                }
            }
            parameters.releaseParameters(.embedding)
            leaveRegion(partial: embeddingOutput, into: a.residual(0))
        }

        for (local, layer) in part.layers.enumerated() {
            var weights = LayerWeights(block: parameters.acquireParameters(.layer(layer)), offsets: layerOffsets[local])
            if let adapters = adapterOffsets?[local] {
                weights.adapters = adapters.weights(parameters.acquireParameters(.adapter(layer)))
            }
            layerForward(local, weights)
            if lora != nil { parameters.releaseParameters(.adapter(layer)) }
            parameters.releaseParameters(.layer(layer))
        }
        if let figures = routerFigures { routerTotals.add(figures) }

        guard let headOffsets else { return }
        let head = parameters.acquireParameters(.head)
        let tied = headOffsets.languageModelHead == nil && headOffsets.score == nil
        let projection = headOffsets.score.map { head + $0 } ?? headOffsets.languageModelHead.map { head + $0 }
            ?? parameters.acquireParameters(.embedding)
        timed(.rmsnorm, .forward) {
            RMSNorm.forward(output: normOutput(for: a.finalNorm), rstd: a.finalRstd, input: a.residual(part.layers.count),
                            weight: head + headOffsets.norm, rowCount: localTokenCount, hiddenSize: c, epsilon: epsilon, threads: threads)
        }
        enterRegion(a.finalNorm)
        // lm_head (vocabulary-parallel: this rank's vocabulary slice), or the replicated score head.
        timed(.matmul, .forward) {
            if let quantized = quantizedHead(tied: tied) {
                NF4Matmul.forward(output: a.logits, input: a.finalNorm, weight: quantized, bias: nil,
                                  rowCount: n, inputSize: c, outputSize: config.headWidth, threads: threads)
            } else {
                Matmul.forward(output: a.logits, input: a.finalNorm, weight: projection, bias: nil,
                               rowCount: n, inputSize: c, outputSize: config.headWidth, threads: threads)
            }
        }
        if tied { parameters.releaseParameters(.embedding) }
        parameters.releaseParameters(.head)
    }

    // MARK: Backward

    /// `backward(parameters:)` of `lossScale × lossSum` of the last `forward` (usually lossScale
    /// = 1 / global target count, the mean next-token loss): every counted token's
    /// ∂loss/∂log p is −lossScale.
    public func backward(lossScale: Float, parameters: any ParameterAccess) {
        precondition(!config.hasScoreHead, "a scalar head has no next-token loss: write scoreGradient and call backward(parameters:)")
        if part.hasHead {
            let targets = activations.targets
            for row in 0..<tokenCount {
                logProbabilityGradients.pointer[row] = targets[row] == CrossEntropy.defaultIgnoreIndex ? 0 : -lossScale
            }
        }
        backward(parameters: parameters)
    }

    /// Accumulates into the parameters' gradients those of the loss whose gradient with respect
    /// to each token's log p(target) is in `logProbabilityGradient` (with a scalar head: to each
    /// score, in `scoreGradient`), written after the last forward. Consumes the forward's activations: the logits become their own gradient, so
    /// each backward needs a forward with targets before it. A part without the head starts
    /// from `stageOutputGradient`; one without the embedding ends with `stageInputGradient`.
    public func backward(parameters: any ParameterAccess) {
        precondition(!forwardOnly, "backward on a forward-only model")
        precondition(state == .loss, "backward needs a forward with targets since the last backward")
        checkLayout(parameters.layout)
        state = .empty
        let a = activations
        let (n, c, v) = (tokenCount, config.hiddenSize, config.vocabSize)
        let tiedTableGradient = headOffsets.flatMap { headBackward(parameters: parameters, offsets: $0) }

        for (local, layer) in part.layers.enumerated().reversed() {
            let offsets = layerOffsets[local]
            var weights = LayerWeights(block: parameters.acquireParameters(.layer(layer)), offsets: offsets)
            let adapters = adapterOffsets?[local]
            if let adapters { weights.adapters = adapters.weights(parameters.acquireParameters(.adapter(layer))) }
            if recompute { layerForward(local, weights) }
            // A layer whose every tensor is frozen acquires no gradients: nothing to reduce.
            let block = offsets.trains ? parameters.acquireGradients(.layer(layer)) : nil
            let adapterTrains = adapters?.trains ?? false
            let adapterGradients = adapters?.gradients(adapterTrains ? parameters.acquireGradients(.adapter(layer)) : nil)
            // The first layer's input gradient goes only to the embedding: none when it is frozen.
            let inputGradientNeeded = local > 0 || !part.hasEmbedding || layout.trains(.embedding)
            layerBackward(local, weights, LayerGradients(block: block, offsets: offsets), adapterGradients,
                          inputGradientNeeded: inputGradientNeeded)
            if adapterTrains { parameters.releaseGradients(.adapter(layer)) }
            if offsets.trains { parameters.releaseGradients(.layer(layer)) }
            if lora != nil { parameters.releaseParameters(.adapter(layer)) }
            parameters.releaseParameters(.layer(layer))
        }

        guard part.hasEmbedding else {
            // A tied head's table gradient (a pipeline's last stage) is complete here.
            if tiedTableGradient != nil { parameters.releaseGradients(.embedding) }
            return
        }
        // A frozen table needs no gradient, and the lookup has no input to pass one to.
        guard layout.trains(.embedding) else { return }
        let embeddingGradient = tiedTableGradient ?? parameters.acquireGradients(.embedding)
        let streamGradient = gatheredStreamGradient()
        timed(.embedding, .backward) {
            Embedding.backward(tableGradient: embeddingGradient, outputGradient: streamGradient, tokens: a.tokens,
                               tokenCount: n, vocabularySize: v, hiddenSize: c, vocabularyStart: regions.vocabularyStart,
                               threads: threads)
        }
        parameters.releaseGradients(.embedding)
    }

    /// The head's backward: loss → logits (in place) → lm_head, or scores → score head; then
    /// model.norm → the gradient of the last layer's output in `residualGradient`. Returns the
    /// tied table's gradient, which stays acquired until the embedding's backward.
    private func headBackward(parameters: any ParameterAccess, offsets: HeadOffsets) -> UnsafeMutablePointer<Float>? {
        let a = activations
        let (n, c, v) = (tokenCount, config.hiddenSize, config.headWidth)
        let tied = offsets.languageModelHead == nil && offsets.score == nil
        let head = parameters.acquireParameters(.head)
        // Frozen tensors get no gradient pointer; a block with none that trains is not acquired.
        let headTrains = layout.trains(.head)
        let headGradient: UnsafeMutablePointer<Float>?
        let projection: UnsafeMutablePointer<Float>
        let projectionGradient: UnsafeMutablePointer<Float>?
        var tiedTableGradient: UnsafeMutablePointer<Float>?
        if let offset = offsets.score ?? offsets.languageModelHead {
            headGradient = headTrains ? parameters.acquireGradients(.head) : nil
            projection = head + offset
            let name = offsets.score == nil ? "lm_head.weight" : "score.weight"
            projectionGradient = layout.trains(name) ? headGradient.map { $0 + offset } : nil
        } else {
            projection = parameters.acquireParameters(.embedding)
            headGradient = headTrains ? parameters.acquireGradients(.head) : nil
            projectionGradient = layout.trains(.embedding) ? parameters.acquireGradients(.embedding) : nil
            tiedTableGradient = projectionGradient
        }
        let normGradient = layout.trains("model.norm.weight") ? headGradient.map { $0 + offsets.norm } : nil
        let outputGradient: UnsafePointer<Float>
        if config.hasScoreHead {
            outputGradient = UnsafePointer(scoreGradients.pointer)
        } else {
            timed(.crossEntropy, .backward) {
                CrossEntropy.backward(logitsGradient: a.logits, logSumExp: a.lossLogSumExp, logits: a.logits,
                                      targets: a.targets, logProbabilityGradient: logProbabilityGradients.pointer,
                                      rowCount: n, vocabularySize: v, vocabularyStart: regions.vocabularyStart ?? 0, threads: threads)
            }
            outputGradient = UnsafePointer(a.logits)
        }
        zero(a.normGradient, n * c)
        // The norm's output gradient is summed over the tensor group next: a vocabulary-parallel
        // lm_head gives each rank a part of it, but the replicated score head gives every rank all
        // of it, so only the first rank adds it (every rank still takes the score's weight
        // gradient, the same on each, as replicated tensors do).
        let addsInputGradient = !config.hasScoreHead || regions.isFirstRank
        timed(.matmul, .backward) {
            if let quantized = quantizedHead(tied: tied) {
                precondition(projectionGradient == nil, "a quantized head is frozen")
                if addsInputGradient {
                    NF4Matmul.backward(inputGradient: a.normGradient, outputGradient: outputGradient, weight: quantized,
                                       rowCount: n, inputSize: c, outputSize: v, threads: threads)
                }
            } else {
                Matmul.backward(inputGradient: addsInputGradient ? a.normGradient : nil, weightGradient: projectionGradient,
                                biasGradient: nil, outputGradient: outputGradient, input: a.finalNorm, weight: projection,
                                rowCount: n, inputSize: c, outputSize: v, threads: threads)
            }
        }
        let finalNormGradient = reduceNormGradient()
        zero(a.residualGradient, localTokenCount * c)
        timed(.rmsnorm, .backward) {
            RMSNorm.backward(inputGradient: a.residualGradient, weightGradient: normGradient,
                             outputGradient: finalNormGradient, rstd: a.finalRstd, input: a.residual(part.layers.count),
                             weight: head + offsets.norm, rowCount: localTokenCount, hiddenSize: c, threads: threads)
        }
        if headTrains { parameters.releaseGradients(.head) }
        if tied { parameters.releaseParameters(.embedding) }
        parameters.releaseParameters(.head)
        return tiedTableGradient
    }

    // MARK: Helpers

    /// The parameters given must hold every block of this model's part, laid out the same way
    /// (they may hold more: the other chunks of an interleaved pipeline stage).
    private func checkLayout(_ given: ParameterLayout) {
        precondition(layout.blocks.allSatisfy { given.contains($0) && given.range(of: $0).count == layout.range(of: $0).count },
                     "parameters laid out for blocks \(given.blocks) given to a model of \(part)")
        precondition(layout.entries.allSatisfy { given.trains($0.name) == $0.trainable },
                     "parameters frozen differently from the model's frozen tensors")
    }

    /// Calls `body(start, batchSize, length)` for each span of tokens that attention treats as
    /// whole sequences; `start` is a token index into the [B·T] rows. Without document masking:
    /// one call for the whole [B, T] batch. With it: one call per document (batch size 1), where
    /// a document ends when the next token's position does not continue its own.
    @inline(__always)
    func forEachAttentionSpan(_ body: (_ start: Int, _ batchSize: Int, _ length: Int) -> Void) {
        guard documentMasking else {
            body(0, microBatchSize, sequenceLength)
            return
        }
        let positions = activations.positions
        for row in 0..<microBatchSize {
            let rowStart = row * sequenceLength
            var documentStart = rowStart
            for token in rowStart + 1..<rowStart + sequenceLength where positions[token] != positions[token - 1] + 1 {
                body(documentStart, 1, token - documentStart)
                documentStart = token
            }
            body(documentStart, 1, rowStart + sequenceLength - documentStart)
        }
    }

    @inline(__always)
    func zero(_ buffer: UnsafeMutablePointer<Float>, _ count: Int) {
        buffer.update(repeating: 0, count: count)
    }

    /// Runs one kernel call, timed when a profile is attached.
    @inline(__always)
    func timed(_ kernel: StepProfile.Kernel, _ direction: StepProfile.Direction, _ body: () -> Void) {
        if let profile { profile.measure(kernel, direction, body) } else { body() }
    }
}

/// Σ log p(target) over a sequence's counted targets, and how many counted.
public struct SequenceLogProbability: Sendable, Equatable {
    public var sum: Double
    public var count: Int
    /// `sum / count`, or 0 when nothing counted (length-normalized, as IPO and SimPO use it).
    public var mean: Double { count == 0 ? 0 : sum / Double(count) }

    public init(sum: Double, count: Int) {
        self.sum = sum
        self.count = count
    }
}
