/// DoRA (Liu et al. 2024, weight-decomposed low-rank adaptation) as PEFT computes it for a linear
/// projection W [out, in] with a LoRA adapter (A [r, in], B [out, r], scaling s) and a magnitude
/// m [out]:
///
///     W' = m / ‖W + s·B·A‖_row ⊙ (W + s·B·A)        ‖·‖_row: each output row's L2 norm over the input
///
/// The norm is detached: treated as a constant in backward (paper §4.3; PEFT `.detach()`s it),
/// so no gradient flows through it. The caller computes the direction product
/// V = x·(W + s·B·A)ᵀ = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with `Matmul` and `LowRankAdapter`; these kernels
/// normalize it, apply the magnitude and take the magnitude's gradient.
///
///     direction  [rowCount, outputSize]   V / norm, saved for backward
///     scale      [outputSize]             m / norm, saved for backward
public enum WeightDecomposedAdapter {
    /// Rows of W + s·B·A formed at a time by `squaredRowNorms`: its scratch holds this many rows
    /// (few enough to stay small, enough that each block is one sizeable product).
    public static let rowBlock = 256

    /// squaredNorms[o] = Σ_j (W[o, j] + scaling · (B·A)[o, j])²     [outputSize]
    ///
    /// `scratch` holds `rowBlock · inputSize` floats: W + s·B·A is formed a block of rows at a
    /// time, never whole. Under tensor parallelism a row-parallel projection (whose rank holds a
    /// slice of the input columns) gets partial sums here, which the caller sums over the group.
    public static func squaredRowNorms(
        squaredNorms: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        weight: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, scaling: Float,
        outputSize: Int, inputSize: Int, rank: Int
    ) {
        for first in stride(from: 0, to: outputSize, by: rowBlock) {
            let rows = Swift.min(rowBlock, outputSize - first)
            scratch.update(from: weight + first * inputSize, count: rows * inputSize)
            BLAS.multiply(output: scratch, a: b + first * rank, b: a, rowCount: rows, columnCount: inputSize, innerCount: rank,
                          alpha: scaling, beta: 1)
            for row in 0..<rows {
                var sum: Double = 0
                let values = scratch + row * inputSize
                for column in 0..<inputSize { sum += Double(values[column]) * Double(values[column]) }
                squaredNorms[first + row] = Float(sum)
            }
        }
    }

    /// Finishes the projection from the direction product V in `direction`:
    ///
    ///     norm[o]          = √squaredNorms[o]
    ///     squaredNorms    ← 1 / norm                      [outputSize]            (consumed)
    ///     direction       ← V / norm                      [rowCount, outputSize]
    ///     scale[o]         = magnitude[o] / norm[o]       [outputSize]
    ///     output          += magnitude ⊙ direction        [rowCount, outputSize]
    public static func forward(
        output: UnsafeMutablePointer<Float>, direction: UnsafeMutablePointer<Float>, scale: UnsafeMutablePointer<Float>,
        squaredNorms: UnsafeMutablePointer<Float>, magnitude: UnsafePointer<Float>,
        rowCount: Int, outputSize: Int, threads: KernelThreads = .single
    ) {
        let inverseNorms = squaredNorms
        for column in 0..<outputSize {
            inverseNorms[column] = 1 / squaredNorms[column].squareRoot()
            scale[column] = magnitude[column] * inverseNorms[column]
        }
        threads.parallelFor(0..<rowCount, minimumChunk: 16) { rows in
            for row in rows {
                let v = direction + row * outputSize, y = output + row * outputSize
                for column in 0..<outputSize {
                    let normalized = v[column] * inverseNorms[column]
                    v[column] = normalized
                    y[column] += magnitude[column] * normalized
                }
            }
        }
    }

    /// The gradients of `forward`'s output with g = outputGradient (the norm detached):
    ///
    ///     magnitudeGradient[o] += Σ_n g[n, o] · direction[n, o]   [outputSize]  (skipped if nil)
    ///     scaledGradient        = scale ⊙ g                       [rowCount, outputSize]
    ///
    /// `scaledGradient` is the gradient of V, what the base product's and the adapter's
    /// backward (`Matmul`, `LowRankAdapter`) take in place of g.
    public static func backward(
        magnitudeGradient: UnsafeMutablePointer<Float>?, scaledGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, direction: UnsafePointer<Float>, scale: UnsafePointer<Float>,
        rowCount: Int, outputSize: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<rowCount, minimumChunk: 16) { rows in
            for row in rows {
                let g = outputGradient + row * outputSize, scaled = scaledGradient + row * outputSize
                for column in 0..<outputSize { scaled[column] = scale[column] * g[column] }
            }
        }
        guard let magnitudeGradient else { return }
        // In row order on one thread, so the sum is the same for any thread count.
        for row in 0..<rowCount {
            let g = outputGradient + row * outputSize, d = direction + row * outputSize
            for column in 0..<outputSize { magnitudeGradient[column] += g[column] * d[column] }
        }
    }

    /// The L2 norm of each row of `weight` [rowCount, columnCount]: DoRA's initial magnitude
    /// (PEFT's, with B = 0).
    public static func rowNorms(_ weight: UnsafePointer<Float>, rowCount: Int, columnCount: Int) -> [Float] {
        (0..<rowCount).map { row in
            var sum: Double = 0
            for column in 0..<columnCount {
                let value = Double(weight[row * columnCount + column])
                sum += value * value
            }
            return Float(sum.squareRoot())
        }
    }
}
