/// A LoRA adapter's contribution to a linear projection (PEFT's `lora.Linear`):
///
///     intermediate = input · Aᵀ                      [rowCount, rank]   saved for backward
///     output      += scaling · intermediate · Bᵀ     [rowCount, outputSize]
///
///     input [rowCount, inputSize]   A [rank, inputSize]   B [outputSize, rank]
///
/// The base product (`Matmul`) writes `output` first; this adds to it.
public enum LowRankAdapter {
    public static func forward(
        output: UnsafeMutablePointer<Float>, intermediate: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, scaling: Float,
        rowCount: Int, inputSize: Int, outputSize: Int, rank: Int,
        threads: KernelThreads = .single
    ) {
        BLAS.multiply(output: intermediate, a: input, b: a, bTranspose: .transposed,
                      rowCount: rowCount, columnCount: rank, innerCount: inputSize, threads: threads)
        BLAS.multiply(output: output, a: intermediate, b: b, bTranspose: .transposed,
                      rowCount: rowCount, columnCount: outputSize, innerCount: rank, alpha: scaling, beta: 1, threads: threads)
    }

    /// Accumulates the gradients of `forward`'s adapter term, with g = outputGradient:
    ///
    ///     intermediateGradient  = scaling · g · B                     [rowCount, rank]   (scratch)
    ///     bGradient            += scaling · gᵀ · intermediate         [outputSize, rank] (skipped if nil)
    ///     aGradient            += intermediateGradientᵀ · input       [rank, inputSize]  (skipped if nil)
    ///     inputGradient        += intermediateGradient · A            [rowCount, inputSize]
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>, aGradient: UnsafeMutablePointer<Float>?,
        bGradient: UnsafeMutablePointer<Float>?, intermediateGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, intermediate: UnsafePointer<Float>,
        input: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, scaling: Float,
        rowCount: Int, inputSize: Int, outputSize: Int, rank: Int,
        threads: KernelThreads = .single
    ) {
        BLAS.multiply(output: intermediateGradient, a: outputGradient, b: b,
                      rowCount: rowCount, columnCount: rank, innerCount: outputSize, alpha: scaling, threads: threads)
        if let bGradient {
            BLAS.multiply(output: bGradient, a: outputGradient, aTranspose: .transposed, b: intermediate,
                          rowCount: outputSize, columnCount: rank, innerCount: rowCount, alpha: scaling, beta: 1, threads: threads)
        }
        if let aGradient {
            BLAS.multiply(output: aGradient, a: intermediateGradient, aTranspose: .transposed, b: input,
                          rowCount: rank, columnCount: inputSize, innerCount: rowCount, beta: 1, threads: threads)
        }
        BLAS.multiply(output: inputGradient, a: intermediateGradient, b: a,
                      rowCount: rowCount, columnCount: inputSize, innerCount: rank, beta: 1, threads: threads)
    }

    /// Merges the adapter into its projection's weight as PEFT's `merge_and_unload` does, in f32:
    ///
    ///     W ← W + scaling · B·A                                   (LoRA)
    ///     W ← m / ‖W + scaling · B·A‖_row ⊙ (W + scaling · B·A)    (DoRA: `magnitude` m [outputSize])
    ///
    /// `weight` [outputSize, inputSize] is the whole projection. Serving's merge at load and
    /// `meshlm ckpt merge-lora` both call this, so a merged checkpoint serves bit for bit as its
    /// adapter checkpoint does.
    public static func merge(
        weight: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        magnitude: UnsafePointer<Float>?, scaling: Float, inputSize: Int, outputSize: Int, rank: Int
    ) {
        BLAS.multiply(output: weight, a: b, b: a, rowCount: outputSize, columnCount: inputSize, innerCount: rank,
                      alpha: scaling, beta: 1)
        guard let magnitude else { return }
        for row in 0..<outputSize {
            let values = weight + row * inputSize
            var sum: Double = 0
            for column in 0..<inputSize { sum += Double(values[column]) * Double(values[column]) }
            let factor = magnitude[row] / Float(sum.squareRoot())
            for column in 0..<inputSize { values[column] *= factor }
        }
    }
}
