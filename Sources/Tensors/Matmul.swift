/// A linear layer in Hugging Face layout: `output = input · weightᵀ + bias` (`output +=
/// input · weightᵀ` with `accumulate`, which takes no bias).
///
///     input   [rowCount, inputSize]      rows are tokens (batch × sequence, flattened)
///     weight  [outputSize, inputSize]    as `nn.Linear.weight` and safetensors store it
///     bias    [outputSize] or nil
///     output  [rowCount, outputSize]
///
/// Both directions are sgemm calls (`BLAS.multiply`) split over the rank's threads.
public enum Matmul {
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        rowCount: Int, inputSize: Int, outputSize: Int, accumulate: Bool = false,
        threads: KernelThreads = .single
    ) {
        // With a bias, write it into every row first and let sgemm add to it (beta = 1): one pass
        // over the output instead of two. With `accumulate` the output already holds what the
        // product adds to (a LoRA adapter's output and the bias: `LowRankAdapter.forwardBeforeBase`).
        precondition(!accumulate || bias == nil, "an accumulating product takes its bias in the output it adds to")
        if let bias {
            threads.parallelFor(0..<rowCount, minimumChunk: 16) { rows in
                for row in rows {
                    (output + row * outputSize).update(from: bias, count: outputSize)
                }
            }
        }
        BLAS.multiply(
            output: output,
            a: input, b: weight, bTranspose: .transposed,
            rowCount: rowCount, columnCount: outputSize, innerCount: inputSize,
            beta: bias == nil && !accumulate ? 0 : 1, threads: threads)
    }

    /// Accumulates the gradients of `forward`:
    ///
    ///     inputGradient  += outputGradient · weight            [rowCount, inputSize]   (skipped if nil)
    ///     weightGradient += outputGradientᵀ · input            [outputSize, inputSize]  (skipped if nil: a frozen weight)
    ///     biasGradient   += column sums of outputGradient      [outputSize]            (skipped if nil)
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>?,
        weightGradient: UnsafeMutablePointer<Float>?,
        biasGradient: UnsafeMutablePointer<Float>?,
        outputGradient: UnsafePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rowCount: Int, inputSize: Int, outputSize: Int,
        threads: KernelThreads = .single
    ) {
        if let inputGradient {
            BLAS.multiply(
                output: inputGradient,
                a: outputGradient, b: weight,
                rowCount: rowCount, columnCount: inputSize, innerCount: outputSize,
                beta: 1, threads: threads)
        }
        if let weightGradient {
            BLAS.multiply(
                output: weightGradient,
                a: outputGradient, aTranspose: .transposed, b: input,
                rowCount: outputSize, columnCount: inputSize, innerCount: rowCount,
                beta: 1, threads: threads)
        }
        if let biasGradient {
            // Columns are independent: split them, sum rows in order, so any thread count gives
            // the same bits.
            threads.parallelFor(0..<outputSize, minimumChunk: 64) { columns in
                for row in 0..<rowCount {
                    Vector.add(biasGradient + columns.lowerBound,
                               outputGradient + row * outputSize + columns.lowerBound,
                               count: columns.count)
                }
            }
        }
    }
}
