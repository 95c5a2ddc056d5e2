import Tensors

/// A decoder layer's backward, the counterpart of `LlamaModel+LayerForward.swift`: the MLP (dense,
/// or the experts' in `LlamaModel+Experts.swift`), then attention, each sublayer's input gradient
/// added to the residual stream's.
extension LlamaModel {
    /// One decoder layer's backward: `residualGradient` holds dL/d(output) on entry and
    /// dL/d(input) on return. The residual connections need no kernel: the stream's gradient
    /// passes through unchanged and each sublayer's input gradient accumulates onto it. Without
    /// `inputGradientNeeded` (the first layer under a frozen embedding) the attention norm's
    /// input gradient — and the q/k/v products' input gradients that feed only it — are not
    /// computed unless the norm's weight trains: autograd skips them the same way.
    func layerBackward(_ layer: Int, _ w: LayerWeights, _ g: LayerGradients, _ adapterGradients: LayerAdapters?,
                               inputGradientNeeded: Bool) {
        let a = activations
        let s = a.layer(layer)
        let dStream = a.residualGradient
        let (m, c) = (localTokenCount, config.hiddenSize)

        // MLP sublayer; dStream = dy on entry, dh after the norm's backward.
        if case .experts(let experts) = w.feedForward, case .experts(let expertGradients) = g.feedForward {
            expertBackward(layer, experts, expertGradients)
        } else {
            denseMLPBackward(layer, w, g, adapterGradients)
        }
        let mlpNormGradient = reduceNormGradient()  // gate/up_proj are column-parallel
        timed(.rmsnorm, .backward) {
            RMSNorm.backward(inputGradient: dStream, weightGradient: g.postAttentionNorm, outputGradient: mlpNormGradient,
                             rstd: s.mlpRstd, input: s.attentionResidual, weight: w.postAttentionNorm,
                             rowCount: m, hiddenSize: c, threads: threads)
        }
        attentionBackward(layer, w, g, adapterGradients, inputGradientNeeded: inputGradientNeeded)
    }

    /// A dense MLP's backward: from ∂loss/∂(its output) (the stream's gradient) to that of its
    /// normalized input in `normGradient` (overwritten).
    private func denseMLPBackward(_ layer: Int, _ w: LayerWeights, _ g: LayerGradients, _ adapterGradients: LayerAdapters?) {
        let a = activations
        let s = a.layer(layer)
        let (n, c, i) = (tokenCount, config.hiddenSize, config.intermediateSize)
        let (wGate, wUp, wDown) = w.denseMLP
        guard case .dense(let gGate, let gUp, let gDown) = g.feedForward else { preconditionFailure("a dense layer's gradients") }
        let dy = gatheredStreamGradient()
        zero(a.mlpActivationGradient, n * i)
        let downGradient = adapterOutputGradient(.down, layer, w, adapterGradients, outputGradient: dy, outputSize: c)
        timed(.matmul, .backward) {
            baseBackward(.down, layer: layer, inputGradient: a.mlpActivationGradient, weightGradient: gDown, biasGradient: nil,
                            outputGradient: downGradient, input: s.mlpActivation, weight: wDown, inputSize: i, outputSize: c)
        }
        adapterBackward(.down, layer, w, adapterGradients, inputGradient: a.mlpActivationGradient, outputGradient: dy, input: s.mlpActivation,
                        weight: wDown, inputSize: i, outputSize: c)
        zero(a.gateGradient, n * i)
        zero(a.upGradient, n * i)
        timed(.swiglu, .backward) {
            SwiGLU.backward(gateGradient: a.gateGradient, upGradient: a.upGradient, outputGradient: a.mlpActivationGradient,
                            gate: s.gate, up: s.up, count: n * i, threads: threads)
        }
        zero(a.normGradient, n * c)
        let gateGradient = adapterOutputGradient(.gate, layer, w, adapterGradients, outputGradient: a.gateGradient, outputSize: i)
        timed(.matmul, .backward) {
            baseBackward(.gate, layer: layer, inputGradient: a.normGradient, weightGradient: gGate, biasGradient: nil,
                            outputGradient: gateGradient, input: s.mlpNorm, weight: wGate, inputSize: c, outputSize: i)
        }
        adapterBackward(.gate, layer, w, adapterGradients, inputGradient: a.normGradient, outputGradient: a.gateGradient, input: s.mlpNorm,
                        weight: wGate, inputSize: c, outputSize: i)
        let upGradient = adapterOutputGradient(.up, layer, w, adapterGradients, outputGradient: a.upGradient, outputSize: i)
        timed(.matmul, .backward) {
            baseBackward(.up, layer: layer, inputGradient: a.normGradient, weightGradient: gUp, biasGradient: nil,
                            outputGradient: upGradient, input: s.mlpNorm, weight: wUp, inputSize: c, outputSize: i)
        }
        adapterBackward(.up, layer, w, adapterGradients, inputGradient: a.normGradient, outputGradient: a.upGradient, input: s.mlpNorm,
                        weight: wUp, inputSize: c, outputSize: i)
    }

    /// The attention sublayer's backward: `residualGradient` holds ∂loss/∂h on entry and
    /// ∂loss/∂(the layer's input) on return.
    private func attentionBackward(_ layer: Int, _ w: LayerWeights, _ g: LayerGradients, _ adapterGradients: LayerAdapters?,
                                   inputGradientNeeded: Bool) {
        let a = activations
        let s = a.layer(layer)
        let x = a.residual(layer)
        let dStream = a.residualGradient
        let (n, m, c) = (tokenCount, localTokenCount, config.hiddenSize)
        let (heads, kvHeads, d) = (config.numAttentionHeads, config.numKeyValueHeads, config.headDim)
        let (q, k) = (heads * d, kvHeads * d)

        // Attention sublayer; dStream = dh on entry, dx after the norm's backward.
        let dh = gatheredStreamGradient()
        zero(a.attentionOutputGradient, n * q)
        let outputGradient = adapterOutputGradient(.output, layer, w, adapterGradients, outputGradient: dh, outputSize: c)
        timed(.matmul, .backward) {
            baseBackward(.output, layer: layer, inputGradient: a.attentionOutputGradient, weightGradient: g.output, biasGradient: nil,
                            outputGradient: outputGradient, input: s.attentionOutput, weight: w.output, inputSize: q, outputSize: c)
        }
        adapterBackward(.output, layer, w, adapterGradients, inputGradient: a.attentionOutputGradient, outputGradient: dh, input: s.attentionOutput,
                        weight: w.output, inputSize: q, outputSize: c)
        zero(a.queryGradient, n * q)
        zero(a.keyGradient, n * k)
        zero(a.valueGradient, n * k)
        forEachAttentionSpan { start, batchSize, length in
            timed(.attention, .backward) {
                Attention.backward(
                    queryGradient: a.queryGradient + start * q, keyGradient: a.keyGradient + start * k,
                    valueGradient: a.valueGradient + start * k, outputGradient: a.attentionOutputGradient + start * q,
                    logSumExp: s.attentionLogSumExp + start * heads, output: s.attentionOutput + start * q,
                    query: s.query + start * q, key: s.key + start * k, value: s.value + start * k,
                    batchSize: batchSize, sequenceLength: length, headCount: heads, kvHeadCount: kvHeads,
                    headDimension: d, threads: threads)
            }
        }
        zero(a.queryProjectionGradient, n * q)
        zero(a.keyProjectionGradient, n * k)
        timed(.rope, .backward) {
            RoPE.backward(inputGradient: a.queryProjectionGradient, outputGradient: a.queryGradient, positions: a.positions,
                          table: rope, tokenCount: n, headCount: heads, headDimension: d, threads: threads)
        }
        timed(.rope, .backward) {
            RoPE.backward(inputGradient: a.keyProjectionGradient, outputGradient: a.keyGradient, positions: a.positions,
                          table: rope, tokenCount: n, headCount: kvHeads, headDimension: d, threads: threads)
        }
        // With QK-norm the rotation's input gradient is that of the heads' norm output; the
        // projections' is the norm's input gradient, computed into the (now free) rotated-query
        // and rotated-key gradient buffers.
        var (queryOutputGradient, keyOutputGradient) = (a.queryProjectionGradient, a.keyProjectionGradient)
        if let queryNorm = w.queryNorm, let keyNorm = w.keyNorm {
            zero(a.queryGradient, n * q)
            zero(a.keyGradient, n * k)
            timed(.rmsnorm, .backward) {
                RMSNorm.backward(inputGradient: a.queryGradient, weightGradient: g.queryNorm,
                                 outputGradient: a.queryProjectionGradient, rstd: s.queryRstd, input: s.queryProjection,
                                 weight: queryNorm, rowCount: n * heads, hiddenSize: d, threads: threads)
            }
            timed(.rmsnorm, .backward) {
                RMSNorm.backward(inputGradient: a.keyGradient, weightGradient: g.keyNorm,
                                 outputGradient: a.keyProjectionGradient, rstd: s.keyRstd, input: s.keyProjection,
                                 weight: keyNorm, rowCount: n * kvHeads, hiddenSize: d, threads: threads)
            }
            (queryOutputGradient, keyOutputGradient) = (a.queryGradient, a.keyGradient)
        }
        let normGradientNeeded = inputGradientNeeded || g.inputNorm != nil
        let qkvInputGradient = normGradientNeeded ? a.normGradient : nil
        if normGradientNeeded { zero(a.normGradient, n * c) }
        // Under LoRA the q/k/v biases are frozen: DoRA's scaled gradient never reaches a bias
        // gradient (which would take g itself: PEFT adds the bias outside the decomposed weight).
        let queryGradient = adapterOutputGradient(.query, layer, w, adapterGradients, outputGradient: queryOutputGradient, outputSize: q)
        timed(.matmul, .backward) {
            baseBackward(.query, layer: layer, inputGradient: qkvInputGradient, weightGradient: g.query, biasGradient: g.queryBias,
                            outputGradient: queryGradient, input: s.attentionNorm, weight: w.query, inputSize: c, outputSize: q)
        }
        adapterBackward(.query, layer, w, adapterGradients, inputGradient: qkvInputGradient, outputGradient: queryOutputGradient, input: s.attentionNorm,
                        weight: w.query, inputSize: c, outputSize: q)
        let keyGradient = adapterOutputGradient(.key, layer, w, adapterGradients, outputGradient: keyOutputGradient, outputSize: k)
        timed(.matmul, .backward) {
            baseBackward(.key, layer: layer, inputGradient: qkvInputGradient, weightGradient: g.key, biasGradient: g.keyBias,
                            outputGradient: keyGradient, input: s.attentionNorm, weight: w.key, inputSize: c, outputSize: k)
        }
        adapterBackward(.key, layer, w, adapterGradients, inputGradient: qkvInputGradient, outputGradient: keyOutputGradient, input: s.attentionNorm,
                        weight: w.key, inputSize: c, outputSize: k)
        let valueGradient = adapterOutputGradient(.value, layer, w, adapterGradients, outputGradient: a.valueGradient, outputSize: k)
        timed(.matmul, .backward) {
            baseBackward(.value, layer: layer, inputGradient: qkvInputGradient, weightGradient: g.value, biasGradient: g.valueBias,
                            outputGradient: valueGradient, input: s.attentionNorm, weight: w.value, inputSize: c, outputSize: k)
        }
        adapterBackward(.value, layer, w, adapterGradients, inputGradient: qkvInputGradient, outputGradient: a.valueGradient, input: s.attentionNorm,
                        weight: w.value, inputSize: c, outputSize: k)
        guard normGradientNeeded else { return }
        let attentionNormGradient = reduceNormGradient()  // q/k/v_proj are column-parallel
        timed(.rmsnorm, .backward) {
            RMSNorm.backward(inputGradient: dStream, weightGradient: g.inputNorm, outputGradient: attentionNormGradient,
                             rstd: s.attentionRstd, input: x, weight: w.inputNorm,
                             rowCount: m, hiddenSize: c, threads: threads)
        }
    }
}
