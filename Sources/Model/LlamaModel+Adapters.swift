import Tensors

/// The LoRA adapters' part of a layer's backward, and LoRA dropout's masks (forward draws them in
/// `TrainingLayerKernels.linear`; backward redraws them here). `LoRAConfig` gives the formulas.
extension LlamaModel {
    /// DoRA's part of `projection`'s backward that precedes the base product's (nothing without
    /// DoRA): m's gradient where it trains, and scale ⊙ g (the gradient of the direction product)
    /// into `adapterOutputGradient`. Returns the output gradient the base product's backward
    /// takes: scale ⊙ g without dropout (the base product is part of the decomposed weight's),
    /// g itself with it (PEFT's y = x·Wᵀ + …: x's own base product stays as it is).
    func adapterOutputGradient(_ projection: Projection, _ layer: Int, _ w: LayerWeights, _ gradients: LayerAdapters?,
                               outputGradient: UnsafePointer<Float>, outputSize: Int) -> UnsafePointer<Float> {
        guard w.adapters?.magnitude(projection) != nil, let start = activations.adapterOutputStarts[projection] else { return outputGradient }
        let s = activations.layer(layer)
        timed(.matmul, .backward) {
            WeightDecomposedAdapter.backward(magnitudeGradient: gradients?.gradients(projection).magnitude,
                                             scaledGradient: activations.adapterOutputGradient, outputGradient: outputGradient,
                                             direction: s.adapterDirection + start * tokenCount, scale: s.adapterScale + start,
                                             rowCount: tokenCount, outputSize: outputSize, threads: threads)
        }
        return adapterDropoutKey(projection, layer: layer) == nil ? UnsafePointer(activations.adapterOutputGradient) : outputGradient
    }

    /// A LoRA adapter's backward on `projection` (nothing without one): its gradient into the
    /// projection's input gradient (none when nil), and A's and B's gradients where they train.
    /// With DoRA it takes the scaled gradient `adapterOutputGradient` left; with dropout it
    /// redraws the mask, works on x̃ and passes x̃'s gradient through the mask.
    func adapterBackward(_ projection: Projection, _ layer: Int, _ w: LayerWeights, _ gradients: LayerAdapters?,
                         inputGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
                         input: UnsafePointer<Float>, weight: UnsafePointer<Float>, inputSize: Int, outputSize: Int) {
        guard let adapters = w.adapters, let adapter = adapters.adapter(projection), let lora,
              let slot = lora.targets.firstIndex(of: projection) else { return }
        let g = gradients?.gradients(projection) ?? AdapterTensors(a: nil, b: nil, magnitude: nil)
        let a = activations
        let n = tokenCount
        let decomposed = adapters.magnitude(projection) != nil
        let adapterOutputGradient = decomposed ? UnsafePointer(a.adapterOutputGradient) : outputGradient
        let key = adapterDropoutKey(projection, layer: layer)
        let (firstToken, firstColumn) = ((adapterDropout?.firstRow ?? 0) * sequenceLength, regions.adapterInputStart(projection))
        let probability = Float(lora.dropout)
        var (adapterInput, adapterInputGradient) = (input, inputGradient)
        if let key {
            timed(.matmul, .backward) {
                AdapterDropout.forward(output: a.adapterInput, input: input, key: key, probability: probability, firstToken: firstToken,
                                       firstColumn: firstColumn, rowCount: n, columnCount: inputSize, threads: threads)
            }
            adapterInput = UnsafePointer(a.adapterInput)
            if inputGradient != nil {
                zero(a.adapterInputGradient, n * inputSize)
                adapterInputGradient = a.adapterInputGradient
            }
        }
        timed(.matmul, .backward) {
            LowRankAdapter.backward(inputGradient: adapterInputGradient, aGradient: g.a, bGradient: g.b,
                                    intermediateGradient: a.adapterGradient, outputGradient: adapterOutputGradient,
                                    intermediate: a.layer(layer).adapterIntermediate + slot * n * lora.rank,
                                    input: adapterInput, a: adapter.a, b: adapter.b, scaling: adapters.scaling,
                                    rowCount: n, inputSize: inputSize, outputSize: outputSize, rank: lora.rank,
                                    threads: threads)
        }
        guard let key, let inputGradient, let adapterInputGradient else { return }
        timed(.matmul, .backward) {
            if decomposed {
                // PEFT's (k − 1) ⊙ x̃·Wᵀ: x̃ also takes (scale ⊙ g − g)·W.
                for index in 0..<n * outputSize { a.adapterOutputGradient[index] -= outputGradient[index] }
                baseBackward(projection, layer: layer, inputGradient: adapterInputGradient, weightGradient: nil, biasGradient: nil,
                             outputGradient: a.adapterOutputGradient, input: adapterInput, weight: weight,
                             inputSize: inputSize, outputSize: outputSize)
            }
            AdapterDropout.backward(inputGradient: inputGradient, outputGradient: adapterInputGradient, key: key, probability: probability,
                                    firstToken: firstToken, firstColumn: firstColumn, rowCount: n, columnCount: inputSize, threads: threads)
        }
    }

    /// The key of `projection`'s dropout masks in local layer `layer` for this forward and
    /// backward, or nil when they draw none (no dropout, a forward-only model, or no draw set).
    func adapterDropoutKey(_ projection: Projection, layer: Int) -> UInt64? {
        guard let lora, lora.dropout > 0, !forwardOnly, let draw = adapterDropout,
              let index = Projection.allCases.firstIndex(of: projection) else { return nil }
        // `layer` counts from the part's first layer; the key takes the global index.
        return AdapterDropout.key(seed: draw.seed, step: draw.step, layer: part.layers.lowerBound + layer, projection: index)
    }

    /// x̃ = dropout(input) into `adapterInput` when this forward draws masks for `projection`'s
    /// adapter; nil (the adapter takes the input itself) otherwise. Masks are keyed by the
    /// global token (the micro-batch's first global row) and the global input column (a
    /// row-parallel projection's rank holds a slice of them), so every layout draws one rank's.
    func dropAdapterInput(_ projection: Projection, layer: Int, input: UnsafePointer<Float>, inputSize: Int) -> UnsafePointer<Float>? {
        guard let key = adapterDropoutKey(projection, layer: layer), let lora, let draw = adapterDropout else { return nil }
        let output = activations.adapterInput
        timed(.matmul, .forward) {
            AdapterDropout.forward(output: output, input: input, key: key, probability: Float(lora.dropout),
                                   firstToken: draw.firstRow * sequenceLength, firstColumn: regions.adapterInputStart(projection),
                                   rowCount: tokenCount, columnCount: inputSize, threads: threads)
        }
        return UnsafePointer(output)
    }
}
