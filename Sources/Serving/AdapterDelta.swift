import Tensors

/// A LoRA adapter's term on some rows of a projection's output, the base product already in
/// it (`LowRankAdapter.forward`'s computation, on strided rows, without saving for backward):
///
///     intermediate  = input · Aᵀ                          [rowCount, rank]
///     output       += scaling · intermediate · Bᵀ         [rowCount, outputSize] (rows `outputStride` apart)
///
///     input [rowCount, inputSize] (rows `inputStride` apart)   A [rank, inputSize]   B [outputSize, rank]
///
/// `output` may be a column slice of a wider row (q, k or v inside the fused [Q + 2K] row).
public enum AdapterDelta {
    public static func add(output: UnsafeMutablePointer<Float>, outputStride: Int, intermediate: UnsafeMutablePointer<Float>,
                    input: UnsafePointer<Float>, inputStride: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                    scaling: Float, rowCount: Int, inputSize: Int, outputSize: Int, rank: Int,
                    threads: KernelThreads = .single) {
        BLAS.multiply(output: intermediate, a: input, aStride: inputStride, b: a, bTranspose: .transposed,
                      rowCount: rowCount, columnCount: rank, innerCount: inputSize, threads: threads)
        BLAS.multiply(output: output, outputStride: outputStride, a: intermediate, b: b, bTranspose: .transposed,
                      rowCount: rowCount, columnCount: outputSize, innerCount: rank, alpha: scaling, beta: 1, threads: threads)
    }

    /// The naive reference for tests: the same sums in plain loops, in f64.
    public static func reference(output: UnsafeMutablePointer<Float>, outputStride: Int, input: UnsafePointer<Float>, inputStride: Int,
                          a: UnsafePointer<Float>, b: UnsafePointer<Float>, scaling: Float,
                          rowCount: Int, inputSize: Int, outputSize: Int, rank: Int) {
        for row in 0..<rowCount {
            var intermediate = [Double](repeating: 0, count: rank)
            for r in 0..<rank {
                for k in 0..<inputSize { intermediate[r] += Double(input[row * inputStride + k]) * Double(a[r * inputSize + k]) }
            }
            for column in 0..<outputSize {
                var sum = 0.0
                for r in 0..<rank { sum += intermediate[r] * Double(b[column * rank + r]) }
                output[row * outputStride + column] += Float(Double(scaling) * sum)
            }
        }
    }
}
