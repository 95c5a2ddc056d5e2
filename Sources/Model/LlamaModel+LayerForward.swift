import Tensors

extension LlamaModel {
    /// One decoder layer (`layer` counts from the part's first): `residual(layer)` →
    /// `residual(layer + 1)`, saving what backward reads. The steps are `DecoderLayer.forward`'s.
    func layerForward(_ layer: Int, _ w: LayerWeights) {
        decoderLayers[layer].forward(w, on: TrainingLayerKernels(model: self, layer: layer))
    }
}

/// `DecoderLayer.forward`'s steps as training runs them: on the micro-batch's B·T rows, into the
/// layer's saved activations (`LlamaActivations.Layer`), through the tensor-parallel regions
/// (norm outputs enter a region: gathered with sequence parallelism; o_proj and down_proj leave
/// one: summed, or reduce-scattered), each kernel timed when a profile is attached.
struct TrainingLayerKernels: DecoderLayerKernels {
    let model: LlamaModel
    let layer: Int
    let saved: LlamaActivations.Layer

    init(model: LlamaModel, layer: Int) {
        self.model = model
        self.layer = layer
        saved = model.activations.layer(layer)
    }

    private var config: LlamaConfig { model.config }
    private var threads: KernelThreads { model.threads }

    func normalize(_ sublayer: DecoderSublayer, weight: UnsafeMutablePointer<Float>) {
        let s = saved
        let (input, output, rstd) = sublayer == .attention
            ? (UnsafePointer(model.activations.residual(layer)), s.attentionNorm, s.attentionRstd)
            : (UnsafePointer(s.attentionResidual), s.mlpNorm, s.mlpRstd)
        let rows = model.localTokenCount
        model.timed(.rmsnorm, .forward) {
            RMSNorm.forward(output: model.normOutput(for: output), rstd: rstd, input: input, weight: weight,
                            rowCount: rows, hiddenSize: config.hiddenSize, epsilon: model.epsilon, threads: threads)
        }
        model.enterRegion(output)
    }

    func project(_ sublayer: DecoderSublayer,
                 _ projections: [(projection: Projection, weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>?)],
                 adapters: LayerAdapters?) {
        let s = saved
        let d = config.headDim
        let (q, k, i) = (config.numAttentionHeads * d, config.numKeyValueHeads * d, config.intermediateSize)
        // With QK-norm, q and k stay as projected (the norm's backward reads them) and the norm
        // writes the heads that RoPE rotates.
        let headNorm = config.queryKeyNorm
        let (input, outputs): (UnsafePointer<Float>, [(UnsafeMutablePointer<Float>, Int)]) = sublayer == .attention
            ? (UnsafePointer(s.attentionNorm), [(headNorm ? s.queryProjection : s.query, q),
                                                (headNorm ? s.keyProjection : s.key, k), (s.value, k)])
            : (UnsafePointer(s.mlpNorm), [(s.gate, i), (s.up, i)])
        precondition(projections.count == outputs.count, "\(sublayer) takes \(outputs.count) projections")
        for ((projection, weight, bias), (output, width)) in zip(projections, outputs) {
            linear(projection, weight: weight, bias: bias, adapters: adapters, output: output, input: input,
                   inputSize: config.hiddenSize, outputSize: width)
        }
    }

    /// `projection` of `input` [N, inputSize] into `output` [N, outputSize]: the base product
    /// (with its bias), and the projection's adapter when it has one (`LoRAConfig` gives the
    /// formulas): LoRA's scaling · (x̃·Aᵀ)·Bᵀ, x̃ the input after dropout in training; with DoRA,
    /// the decomposed weight's output. Saves x̃·Aᵀ, and with DoRA the direction and scale, for
    /// backward; x̃ is not saved (backward redraws its mask).
    ///
    /// Under tensor parallelism the adapter is split with its projection (B's rows and m with a
    /// column-parallel one's outputs, A's columns with a row-parallel one's inputs), so a
    /// row-parallel projection's adapter adds to the same partial sum that leaves the region;
    /// its DoRA row norms, whose columns are split over the group, are summed over it first
    /// (one all-reduce of [outputSize]; backward needs none: m's partial gradient is summed with
    /// the gradients).
    private func linear(_ projection: Projection, weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>?,
                        adapters: LayerAdapters?, output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                        inputSize: Int, outputSize: Int) {
        let n = model.tokenCount
        guard let adapters, let adapter = adapters.adapter(projection), let lora = model.lora,
              let slot = lora.targets.firstIndex(of: projection) else {
            model.timed(.matmul, .forward) {
                model.baseForward(projection, layer: layer, output: output, input: input, weight: weight, bias: bias,
                               inputSize: inputSize, outputSize: outputSize)
            }
            return
        }
        let a = model.activations
        let intermediate = saved.adapterIntermediate + slot * n * lora.rank
        let dropped = model.dropAdapterInput(projection, layer: layer, input: input, inputSize: inputSize)
        let adapterInput = dropped ?? input
        guard let magnitude = adapters.magnitude(projection), let start = a.adapterOutputStarts[projection] else {
            model.timed(.matmul, .forward) {
                // The adapter's output (and the bias) first; the base product adds to it.
                LowRankAdapter.forwardBeforeBase(output: output, intermediate: intermediate, input: adapterInput, a: adapter.a,
                                                 b: adapter.b, bias: bias, scaling: adapters.scaling, rowCount: n,
                                                 inputSize: inputSize, outputSize: outputSize, rank: lora.rank, threads: threads)
                model.baseForward(projection, layer: layer, output: output, input: input, weight: weight, bias: nil,
                                  inputSize: inputSize, outputSize: outputSize, accumulate: true)
            }
            return
        }
        // DoRA. V = x̃·Wᵀ + s·(x̃·Aᵀ)·Bᵀ into the saved direction. Without dropout (x̃ = x):
        // y = bias + m ⊙ V / norm. With it, PEFT's y = x·Wᵀ + bias + (k − 1) ⊙ x̃·Wᵀ +
        // k ⊙ s·(x̃·Aᵀ)·Bᵀ (k = m / norm) = x·Wᵀ + bias − x̃·Wᵀ + m ⊙ V / norm.
        let direction = saved.adapterDirection + start * n
        model.timed(.matmul, .forward) {
            model.baseForward(projection, layer: layer, output: direction, input: adapterInput, weight: weight, bias: nil,
                           inputSize: inputSize, outputSize: outputSize)
            if dropped == nil {
                for row in 0..<n {
                    if let bias { (output + row * outputSize).update(from: bias, count: outputSize) }
                    else { (output + row * outputSize).update(repeating: 0, count: outputSize) }
                }
            } else {
                model.baseForward(projection, layer: layer, output: output, input: input, weight: weight, bias: bias,
                               inputSize: inputSize, outputSize: outputSize)
                for index in 0..<n * outputSize { output[index] -= direction[index] }
            }
            LowRankAdapter.forward(output: direction, intermediate: intermediate, input: adapterInput, a: adapter.a, b: adapter.b,
                                   scaling: adapters.scaling, rowCount: n, inputSize: inputSize, outputSize: outputSize,
                                   rank: lora.rank, threads: threads)
            WeightDecomposedAdapter.squaredRowNorms(squaredNorms: a.adapterNorms, scratch: a.adapterWeightRows, weight: weight,
                                                    a: adapter.a, b: adapter.b, scaling: adapters.scaling,
                                                    outputSize: outputSize, inputSize: inputSize, rank: lora.rank)
        }
        if projection.isRowParallel { model.regions.sumPartials(a.adapterNorms, count: outputSize) }
        model.timed(.matmul, .forward) {
            WeightDecomposedAdapter.forward(output: output, direction: direction, scale: saved.adapterScale + start,
                                            squaredNorms: a.adapterNorms, magnitude: magnitude,
                                            rowCount: n, outputSize: outputSize, threads: threads)
        }
    }

    func normalizeHeads(queryWeight: UnsafeMutablePointer<Float>, keyWeight: UnsafeMutablePointer<Float>) {
        let s = saved
        let (n, d) = (model.tokenCount, config.headDim)
        model.timed(.rmsnorm, .forward) {
            RMSNorm.forward(output: s.query, rstd: s.queryRstd, input: s.queryProjection, weight: queryWeight,
                            rowCount: n * config.numAttentionHeads, hiddenSize: d, epsilon: model.epsilon, threads: threads)
        }
        model.timed(.rmsnorm, .forward) {
            RMSNorm.forward(output: s.key, rstd: s.keyRstd, input: s.keyProjection, weight: keyWeight,
                            rowCount: n * config.numKeyValueHeads, hiddenSize: d, epsilon: model.epsilon, threads: threads)
        }
    }

    func rotate() {
        let s = saved
        let positions = model.activations.positions
        model.timed(.rope, .forward) {
            RoPE.forward(output: s.query, input: s.query, positions: positions, table: model.rope,
                         tokenCount: model.tokenCount, headCount: config.numAttentionHeads, headDimension: config.headDim,
                         threads: threads)
        }
        model.timed(.rope, .forward) {
            RoPE.forward(output: s.key, input: s.key, positions: positions, table: model.rope,
                         tokenCount: model.tokenCount, headCount: config.numKeyValueHeads, headDimension: config.headDim,
                         threads: threads)
        }
    }

    func attend() {
        let s = saved
        let (heads, kvHeads, d) = (config.numAttentionHeads, config.numKeyValueHeads, config.headDim)
        let (q, k) = (heads * d, kvHeads * d)
        model.forEachAttentionSpan { start, batchSize, length in
            model.timed(.attention, .forward) {
                Attention.forward(
                    output: s.attentionOutput + start * q, logSumExp: s.attentionLogSumExp + start * heads,
                    query: s.query + start * q, key: s.key + start * k, value: s.value + start * k,
                    batchSize: batchSize, sequenceLength: length, headCount: heads, kvHeadCount: kvHeads,
                    headDimension: d, threads: threads)
            }
        }
    }

    func activate() {
        let s = saved
        model.timed(.swiglu, .forward) {
            SwiGLU.forward(output: s.mlpActivation, gate: s.gate, up: s.up, count: model.tokenCount * config.intermediateSize,
                           threads: threads)
        }
    }

    func projectIntoStream(_ projection: Projection, weight: UnsafeMutablePointer<Float>, adapters: LayerAdapters?) {
        let s = saved
        let a = model.activations
        // attention: h = x + o_proj(attention output); MLP: y = h + down_proj(activation).
        let (input, width, streamIn, streamOut) = projection == .output
            ? (UnsafePointer(s.attentionOutput), config.numAttentionHeads * config.headDim,
               UnsafePointer(a.residual(layer)), s.attentionResidual)
            : (UnsafePointer(s.mlpActivation), config.intermediateSize, UnsafePointer(s.attentionResidual),
               a.residual(layer + 1))
        let partial = model.partialOutput(for: streamOut)
        linear(projection, weight: weight, bias: nil, adapters: adapters, output: partial, input: input,
               inputSize: width, outputSize: config.hiddenSize)
        model.leaveRegion(partial: partial, into: streamOut)  // o_proj and down_proj are row-parallel
        model.timed(.residual, .forward) {
            Residual.forward(output: streamOut, a: streamIn, b: streamOut, count: model.localTokenCount * config.hiddenSize,
                             threads: threads)
        }
    }
}
