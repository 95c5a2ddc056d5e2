import Tensors

extension LlamaModel {
    /// One decoder layer (`layer` counts from the part's first): `residual(layer)` →
    /// `residual(layer + 1)`, saving what backward reads. The steps are `DecoderLayer.forward`'s.
    func layerForward(_ layer: Int, _ w: LayerWeights) {
        decoderLayer.forward(w, on: TrainingLayerKernels(model: self, layer: layer))
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
            model.timed(.matmul, .forward) {
                Matmul.forward(output: output, input: input, weight: weight, bias: bias,
                               rowCount: model.tokenCount, inputSize: config.hiddenSize, outputSize: width, threads: threads)
            }
            addAdapter(projection, adapters, output: output, input: input, inputSize: config.hiddenSize, outputSize: width)
        }
    }

    /// output += scaling · (input · Aᵀ) · Bᵀ when `projection` has a LoRA adapter, saving
    /// input · Aᵀ for backward. Under tensor parallelism the adapter's A and B are split with
    /// their projection (B's rows with a column-parallel one's outputs, A's columns with a
    /// row-parallel one's inputs), so a row-parallel projection's adapter adds to the same
    /// partial sum that leaves the region.
    private func addAdapter(_ projection: Projection, _ adapters: LayerAdapters?, output: UnsafeMutablePointer<Float>,
                            input: UnsafePointer<Float>, inputSize: Int, outputSize: Int) {
        guard let adapters, let adapter = adapters.adapter(projection), let lora = model.lora,
              let slot = lora.targets.firstIndex(of: projection) else { return }
        model.timed(.matmul, .forward) {
            LowRankAdapter.forward(output: output, intermediate: saved.adapterIntermediate + slot * model.tokenCount * lora.rank,
                                   input: input, a: adapter.a, b: adapter.b, scaling: adapters.scaling,
                                   rowCount: model.tokenCount, inputSize: inputSize, outputSize: outputSize, rank: lora.rank,
                                   threads: threads)
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
        model.timed(.matmul, .forward) {
            Matmul.forward(output: partial, input: input, weight: weight, bias: nil,
                           rowCount: model.tokenCount, inputSize: width, outputSize: config.hiddenSize, threads: threads)
        }
        addAdapter(projection, adapters, output: partial, input: input, inputSize: width, outputSize: config.hiddenSize)
        model.leaveRegion(partial: partial, into: streamOut)  // o_proj and down_proj are row-parallel
        model.timed(.residual, .forward) {
            Residual.forward(output: streamOut, a: streamIn, b: streamOut, count: model.localTokenCount * config.hiddenSize,
                             threads: threads)
        }
    }
}
