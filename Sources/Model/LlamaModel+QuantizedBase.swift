import Tensors

/// The base product of a layer projection, over the f32 weight or, with QLoRA, its NF4 copy
/// (`QuantizedBase`): the one place the model chooses between `Matmul` and `NF4Matmul`.
extension LlamaModel {
    /// The NF4 weight of `projection` in local layer `layer` (counted from the part's first),
    /// when the base is quantized.
    func quantizedWeight(_ projection: Projection, layer: Int) -> NF4Matrix? {
        quantizedBase?.weight(projection, layer: part.layers.lowerBound + layer)
    }

    /// The NF4 lm_head (a tied head's: the embedding table), when quantized.
    func quantizedHead(tied: Bool) -> NF4Matrix? {
        tied ? quantizedBase?.embedding : quantizedBase?.head
    }

    /// `Matmul.forward` of `projection` in local layer `layer` (with `accumulate`, added to what
    /// `output` holds).
    func baseForward(_ projection: Projection, layer: Int, output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                     weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, inputSize: Int, outputSize: Int,
                     accumulate: Bool = false) {
        if let quantized = quantizedWeight(projection, layer: layer) {
            NF4Matmul.forward(output: output, input: input, weight: quantized, bias: bias, rowCount: tokenCount,
                              inputSize: inputSize, outputSize: outputSize, accumulate: accumulate, threads: threads)
        } else {
            Matmul.forward(output: output, input: input, weight: weight, bias: bias, rowCount: tokenCount,
                           inputSize: inputSize, outputSize: outputSize, accumulate: accumulate, threads: threads)
        }
    }

    /// `Matmul.backward` of `projection` in local layer `layer`. A quantized weight is frozen:
    /// it takes no weight gradient, only the input's (and a trained bias's).
    func baseBackward(_ projection: Projection, layer: Int, inputGradient: UnsafeMutablePointer<Float>?,
                      weightGradient: UnsafeMutablePointer<Float>?, biasGradient: UnsafeMutablePointer<Float>?,
                      outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                      inputSize: Int, outputSize: Int) {
        guard let quantized = quantizedWeight(projection, layer: layer) else {
            Matmul.backward(inputGradient: inputGradient, weightGradient: weightGradient, biasGradient: biasGradient,
                            outputGradient: outputGradient, input: input, weight: weight,
                            rowCount: tokenCount, inputSize: inputSize, outputSize: outputSize, threads: threads)
            return
        }
        precondition(weightGradient == nil, "the quantized \(projection) weight of layer \(layer) is frozen")
        if let inputGradient {
            NF4Matmul.backward(inputGradient: inputGradient, outputGradient: outputGradient, weight: quantized,
                               rowCount: tokenCount, inputSize: inputSize, outputSize: outputSize, threads: threads)
        }
        if let biasGradient {
            Matmul.backward(inputGradient: nil, weightGradient: nil, biasGradient: biasGradient, outputGradient: outputGradient,
                            input: input, weight: weight, rowCount: tokenCount, inputSize: inputSize, outputSize: outputSize,
                            threads: threads)
        }
    }
}
