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

    /// `forward` for a base product that adds itself afterwards (`Matmul.forward` with
    /// `accumulate`): writes
    ///
    ///     intermediate = input · Aᵀ                          [rowCount, rank]   saved for backward
    ///     output       = bias + scaling · intermediate · Bᵀ  [rowCount, outputSize]
    ///
    /// The second product is computed here rather than by sgemm, which with beta = 1 reads and
    /// writes the whole output once more after the base product (and with beta = 0 clears it
    /// first): this writes it once, in place of the clearing. Each output element is the same
    /// sum in the same order on any thread count.
    public static func forwardBeforeBase(
        output: UnsafeMutablePointer<Float>, intermediate: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
        scaling: Float, rowCount: Int, inputSize: Int, outputSize: Int, rank: Int,
        threads: KernelThreads = .single
    ) {
        BLAS.multiply(output: intermediate, a: input, b: a, bTranspose: .transposed,
                      rowCount: rowCount, columnCount: rank, innerCount: inputSize, threads: threads)
        // scaling · B packed by blocks of 16 outputs: block c holds [rank, 16], row k the 16
        // outputs' column k of B, so the rank loop reads one contiguous run (rows of a plain
        // Bᵀ, outputSize apart, fall in the same few L1 sets); the ragged end, [rank, its width].
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: rank * outputSize)
        defer { packed.deallocate() }
        let width = Vector.width
        for output in 0..<outputSize {
            let block = output / width, lanes = Swift.min(width, outputSize - block * width)
            for k in 0..<rank {
                packed[block * width * rank + k * lanes + output % width] = scaling * b[output * rank + k]
            }
        }
        threads.parallelFor(0..<rowCount, minimumChunk: 16) { rows in
            var row = rows.lowerBound
            while row + 4 <= rows.upperBound {
                adapterOutputRows(4, row: row, output: output, intermediate: intermediate, packed: packed,
                                  bias: bias, outputSize: outputSize, rank: rank)
                row += 4
            }
            while row < rows.upperBound {
                adapterOutputRows(1, row: row, output: output, intermediate: intermediate, packed: packed,
                                  bias: bias, outputSize: outputSize, rank: rank)
                row += 1
            }
        }
    }

    /// `forwardBeforeBase`'s output for `count` (1 or 4) rows from `row`: each element is
    /// bias + Σₖ u[k] · (scaling·B)[output, k] as fused multiply-adds in k order, whatever `count`.
    @inline(__always)
    private static func adapterOutputRows(
        _ count: Int, row: Int, output: UnsafeMutablePointer<Float>, intermediate: UnsafePointer<Float>,
        packed: UnsafePointer<Float>, bias: UnsafePointer<Float>?, outputSize: Int, rank: Int
    ) {
        let u = intermediate + row * rank
        let width = Vector.width
        var column = 0
        while column + width <= outputSize {
            let start = bias.map { Vector.load($0 + column) } ?? Vector.Lanes()
            let block = packed + column * rank
            let y = output + row * outputSize + column
            if count == 4 {
                var (s0, s1, s2, s3) = (start, start, start, start)
                for k in 0..<rank {
                    let bRow = Vector.load(block + k * width)
                    s0.addProduct(Vector.Lanes(repeating: u[k]), bRow)
                    s1.addProduct(Vector.Lanes(repeating: u[rank + k]), bRow)
                    s2.addProduct(Vector.Lanes(repeating: u[2 * rank + k]), bRow)
                    s3.addProduct(Vector.Lanes(repeating: u[3 * rank + k]), bRow)
                }
                Vector.store(s0, y)
                Vector.store(s1, y + outputSize)
                Vector.store(s2, y + 2 * outputSize)
                Vector.store(s3, y + 3 * outputSize)
            } else {
                var s0 = start
                for k in 0..<rank { s0.addProduct(Vector.Lanes(repeating: u[k]), Vector.load(block + k * width)) }
                Vector.store(s0, y)
            }
            column += width
        }
        let lanes = outputSize - column
        for r in 0..<count {
            for tail in column..<outputSize {
                var sum = bias?[tail] ?? 0
                for k in 0..<rank { sum.addProduct(u[r * rank + k], packed[column * rank + k * lanes + tail - column]) }
                output[(row + r) * outputSize + tail] = sum
            }
        }
    }

    /// Accumulates the gradients of `forward`'s adapter term, with g = outputGradient:
    ///
    ///     intermediateGradient  = scaling · g · B                     [rowCount, rank]   (scratch)
    ///     bGradient            += scaling · gᵀ · intermediate         [outputSize, rank] (skipped if nil)
    ///     aGradient            += intermediateGradientᵀ · input       [rank, inputSize]  (skipped if nil)
    ///     inputGradient        += intermediateGradient · A            [rowCount, inputSize]  (skipped if nil)
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>?, aGradient: UnsafeMutablePointer<Float>?,
        bGradient: UnsafeMutablePointer<Float>?, intermediateGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, intermediate: UnsafePointer<Float>,
        input: UnsafePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, scaling: Float,
        rowCount: Int, inputSize: Int, outputSize: Int, rank: Int,
        threads: KernelThreads = .single
    ) {
        if let bGradient, rank % 8 == 0 {
            outputGradientProducts(intermediateGradient: intermediateGradient, bGradient: bGradient,
                                   outputGradient: outputGradient, intermediate: intermediate, b: b, scaling: scaling,
                                   rowCount: rowCount, outputSize: outputSize, rank: rank, threads: threads)
        } else {
            BLAS.multiply(output: intermediateGradient, a: outputGradient, b: b,
                          rowCount: rowCount, columnCount: rank, innerCount: outputSize, alpha: scaling, threads: threads)
            if let bGradient {
                BLAS.multiply(output: bGradient, a: outputGradient, aTranspose: .transposed, b: intermediate,
                              rowCount: outputSize, columnCount: rank, innerCount: rowCount, alpha: scaling, beta: 1, threads: threads)
            }
        }
        if let aGradient {
            BLAS.multiply(output: aGradient, a: intermediateGradient, aTranspose: .transposed, b: input,
                          rowCount: rank, columnCount: inputSize, innerCount: rowCount, beta: 1, threads: threads)
        }
        if let inputGradient {
            BLAS.multiply(output: inputGradient, a: intermediateGradient, b: a,
                          rowCount: rowCount, columnCount: inputSize, innerCount: rank, beta: 1, threads: threads)
        }
    }

    /// The two products of `backward` that read the output gradient g [rowCount, outputSize],
    /// computed in one pass over it (sgemm would read it twice, and runs both of these thin
    /// products — 16 or so columns — at a third of its usual rate):
    ///
    ///     intermediateGradient  = scaling · g · B         [rowCount, rank]
    ///     bGradient            += scaling · gᵀ · intermediate   [outputSize, rank]
    ///
    /// For each block of `tokenBlock` rows and four rows at a time, a row of B and of the
    /// block's partial bGradient (both cached: [outputSize, rank]) are loaded once per output
    /// column and used for the four rows. The blocks depend on `rowCount` alone and their
    /// partial sums are added in block order, so the bits do not depend on the thread count.
    /// `rank` must be a multiple of 8.
    public static func outputGradientProducts(
        intermediateGradient: UnsafeMutablePointer<Float>, bGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, intermediate: UnsafePointer<Float>, b: UnsafePointer<Float>, scaling: Float,
        rowCount: Int, outputSize: Int, rank: Int, threads: KernelThreads = .single
    ) {
        precondition(rank % 8 == 0, "rank \(rank) is not a multiple of 8")
        let blockCount = Swift.max(1, (rowCount + tokenBlock - 1) / tokenBlock)
        let partialSize = outputSize * rank
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: blockCount * partialSize)
        defer { partials.deallocate() }
        threads.parallelFor(0..<blockCount) { blocks in
            for block in blocks {
                let partial = partials + block * partialSize
                partial.initialize(repeating: 0, count: partialSize)
                let rows = block * tokenBlock..<Swift.min(rowCount, (block + 1) * tokenBlock)
                var column = 0
                while column + 16 <= rank {
                    outputGradientColumns(SIMD16<Float>.self, column: column, rows: rows, intermediateGradient: intermediateGradient,
                                          partial: partial, outputGradient: outputGradient, intermediate: intermediate, b: b,
                                          scaling: scaling, outputSize: outputSize, rank: rank)
                    column += 16
                }
                if column < rank {
                    outputGradientColumns(SIMD8<Float>.self, column: column, rows: rows, intermediateGradient: intermediateGradient,
                                          partial: partial, outputGradient: outputGradient, intermediate: intermediate, b: b,
                                          scaling: scaling, outputSize: outputSize, rank: rank)
                }
            }
        }
        // bGradient += scaling · Σ partials, in block order.
        threads.parallelFor(0..<partialSize, minimumChunk: 4096) { elements in
            for element in elements {
                var sum: Float = 0
                for block in 0..<blockCount { sum += partials[block * partialSize + element] }
                bGradient[element] += scaling * sum
            }
        }
    }

    /// Rows per block of `outputGradientProducts`.
    static let tokenBlock = 256

    /// `outputGradientProducts` for columns `column ..< column + lanes` of the rank and `rows`
    /// of g, the unscaled gᵀ·intermediate into `partial`.
    @inline(__always)
    private static func outputGradientColumns<Lanes: SIMD>(
        _: Lanes.Type, column: Int, rows: Range<Int>, intermediateGradient: UnsafeMutablePointer<Float>,
        partial: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, intermediate: UnsafePointer<Float>,
        b: UnsafePointer<Float>, scaling: Float, outputSize: Int, rank: Int
    ) where Lanes.Scalar == Float {
        @inline(__always) func load(_ pointer: UnsafePointer<Float>) -> Lanes {
            UnsafeRawPointer(pointer).loadUnaligned(as: Lanes.self)
        }
        @inline(__always) func store(_ value: Lanes, _ pointer: UnsafeMutablePointer<Float>) {
            UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Lanes.self)
        }
        var row = rows.lowerBound
        while row + 4 <= rows.upperBound {
            let g0 = outputGradient + row * outputSize, g1 = g0 + outputSize, g2 = g1 + outputSize, g3 = g2 + outputSize
            let u = intermediate + row * rank + column
            let (u0, u1, u2, u3) = (load(u), load(u + rank), load(u + 2 * rank), load(u + 3 * rank))
            // Two sets of sums (even and odd output columns) so consecutive columns do not wait
            // on one another's multiply-add.
            var (s0, s1, s2, s3) = (Lanes(), Lanes(), Lanes(), Lanes())
            var (t0, t1, t2, t3) = (Lanes(), Lanes(), Lanes(), Lanes())
            @inline(__always) func step(_ output: Int, _ s0: inout Lanes, _ s1: inout Lanes, _ s2: inout Lanes, _ s3: inout Lanes) {
                let bRow = load(b + output * rank + column)
                let (x0, x1, x2, x3) = (Lanes(repeating: g0[output]), Lanes(repeating: g1[output]),
                                        Lanes(repeating: g2[output]), Lanes(repeating: g3[output]))
                s0.addProduct(x0, bRow)
                s1.addProduct(x1, bRow)
                s2.addProduct(x2, bRow)
                s3.addProduct(x3, bRow)
                let p = partial + output * rank + column
                var first = x0 * u0, second = x2 * u2
                first.addProduct(x1, u1)
                second.addProduct(x3, u3)
                store(load(p) + (first + second), p)
            }
            var output = 0
            while output + 2 <= outputSize {
                step(output, &s0, &s1, &s2, &s3)
                step(output + 1, &t0, &t1, &t2, &t3)
                output += 2
            }
            if output < outputSize { step(output, &s0, &s1, &s2, &s3) }
            (s0, s1, s2, s3) = (s0 + t0, s1 + t1, s2 + t2, s3 + t3)
            let ig = intermediateGradient + row * rank + column
            store(s0 * scaling, ig)
            store(s1 * scaling, ig + rank)
            store(s2 * scaling, ig + 2 * rank)
            store(s3 * scaling, ig + 3 * rank)
            row += 4
        }
        while row < rows.upperBound {
            let g0 = outputGradient + row * outputSize
            let u0 = load(intermediate + row * rank + column)
            var s0 = Lanes()
            for output in 0..<outputSize {
                let x0 = Lanes(repeating: g0[output])
                s0.addProduct(x0, load(b + output * rank + column))
                let p = partial + output * rank + column
                var sum = load(p)
                sum.addProduct(x0, u0)
                store(sum, p)
            }
            store(s0 * scaling, intermediateGradient + row * rank + column)
            row += 1
        }
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
