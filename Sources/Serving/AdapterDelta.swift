import Tensors

/// A LoRA adapter's term on some rows of a projection's output, the base product already in
/// it (`LowRankAdapter.forward`'s computation, on strided rows, without saving for backward):
///
///     intermediate  = scaling · input · Aᵀ                [rowCount, rank]
///     output       += intermediate · Bᵀ                   [rowCount, outputSize] (rows `outputStride` apart)
///
///     input [rowCount, inputSize] (rows `inputStride` apart)   A [rank, inputSize]
///     bTransposed  Bᵀ [rank, outputSize]  (B is [outputSize, rank]; `ServedAdapter` stores it transposed)
///
/// `output` may be a column slice of a wider row (q, k or v inside the fused [Q + 2K] row).
///
/// Decode-sized runs (up to `SmallBatchLinear.maximumRows` rows) take a loop of their own on the
/// calling thread: r dot products per row, then Bᵀ's rows added along the output with the row's r
/// values broadcast (16 outputs per fused multiply-add, no horizontal sums). Two sgemm calls
/// would cost more in call and thread overhead than the few hundred thousand multiply-adds
/// (measured: 0.81× the base's tokens/s at batch 1 with one rank-16 adapter on every
/// projection of the 124M model through sgemm). Longer runs (prefill) are sgemm.
public enum AdapterDelta {
    public static func add(output: UnsafeMutablePointer<Float>, outputStride: Int, intermediate: UnsafeMutablePointer<Float>,
                           input: UnsafePointer<Float>, inputStride: Int, a: UnsafePointer<Float>, bTransposed: UnsafePointer<Float>,
                           scaling: Float, rowCount: Int, inputSize: Int, outputSize: Int, rank: Int,
                           threads: KernelThreads = .single) {
        guard rowCount > SmallBatchLinear.maximumRows else {
            for row in 0..<rowCount {
                addRow(output: output + row * outputStride, intermediate: intermediate, input: input + row * inputStride,
                       a: a, bTransposed: bTransposed, scaling: scaling, inputSize: inputSize, outputSize: outputSize, rank: rank)
            }
            return
        }
        BLAS.multiply(output: intermediate, a: input, aStride: inputStride, b: a, bTranspose: .transposed,
                      rowCount: rowCount, columnCount: rank, innerCount: inputSize, alpha: scaling, threads: threads)
        BLAS.multiply(output: output, outputStride: outputStride, a: intermediate, b: bTransposed,
                      rowCount: rowCount, columnCount: outputSize, innerCount: rank, beta: 1, threads: threads)
    }

    @inline(__always)
    private static func load(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
    }

    /// One row: `intermediate[0..<rank]` = scaling · A·x, then output += Bᵀ's rows weighted by it.
    private static func addRow(output: UnsafeMutablePointer<Float>, intermediate: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               a: UnsafePointer<Float>, bTransposed: UnsafePointer<Float>, scaling: Float,
                               inputSize: Int, outputSize: Int, rank: Int) {
        for r in 0..<rank {
            let weights = a + r * inputSize
            var lanes = SIMD16<Float>()
            var k = 0
            while k + 16 <= inputSize {
                lanes.addProduct(load(input + k), load(weights + k))
                k += 16
            }
            var total = lanes.sum()
            while k < inputSize {
                total += input[k] * weights[k]
                k += 1
            }
            intermediate[r] = scaling * total
        }
        var column = 0
        while column + 16 <= outputSize {
            var sum = load(output + column)
            for r in 0..<rank { sum.addProduct(SIMD16(repeating: intermediate[r]), load(bTransposed + r * outputSize + column)) }
            UnsafeMutableRawPointer(output + column).storeBytes(of: sum, as: SIMD16<Float>.self)
            column += 16
        }
        while column < outputSize {
            var sum = output[column]
            for r in 0..<rank { sum += intermediate[r] * bTransposed[r * outputSize + column] }
            output[column] = sum
            column += 1
        }
    }

    /// The naive reference for tests: the same sums in plain loops, in f64.
    public static func reference(output: UnsafeMutablePointer<Float>, outputStride: Int, input: UnsafePointer<Float>, inputStride: Int,
                                 a: UnsafePointer<Float>, bTransposed: UnsafePointer<Float>, scaling: Float,
                                 rowCount: Int, inputSize: Int, outputSize: Int, rank: Int) {
        for row in 0..<rowCount {
            var intermediate = [Double](repeating: 0, count: rank)
            for r in 0..<rank {
                for k in 0..<inputSize { intermediate[r] += Double(input[row * inputStride + k]) * Double(a[r * inputSize + k]) }
            }
            for column in 0..<outputSize {
                var sum = 0.0
                for r in 0..<rank { sum += intermediate[r] * Double(bTransposed[r * outputSize + column]) }
                output[row * outputStride + column] += Float(Double(scaling) * sum)
            }
        }
    }
}
