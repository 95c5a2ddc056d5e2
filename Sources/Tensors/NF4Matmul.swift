/// `Matmul` over a weight stored as an `NF4Matrix` (QLoRA's frozen base): the weight is
/// dequantized one tile at a time into scratch, never whole, and each tile is one sgemm.
///
///     input   [rowCount, inputSize]
///     weight  [outputSize, inputSize]   NF4, x̂ as `NF4Matrix` dequantizes it
///     output  [rowCount, outputSize]
///
/// Tiles are `tileLength` rows of the weight (forward: a tile of output columns) or columns of
/// it (input gradient: a tile of input columns), fixed by the sizes alone; threads share out
/// whole tiles, each tile's product is a single-threaded `BLAS.multiply` (itself cut by sizes
/// only), and tiles write disjoint output columns, so any thread count gives the same bits. The
/// result equals `Matmul` on the whole dequantized weight up to sgemm's blocking (each output
/// element is the same dot product summed in OpenBLAS's order for the tile's call).
public enum NF4Matmul {
    /// Weight rows (forward) or columns (input gradient) per tile: a tile of a 2048-wide weight
    /// is 1 MiB of scratch.
    public static let tileLength = 128

    /// output = input · x̂ᵀ (+ bias); with `accumulate`, output += input · x̂ᵀ (no bias), as
    /// `Matmul.forward`.
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: NF4Matrix, bias: UnsafePointer<Float>?,
        rowCount: Int, inputSize: Int, outputSize: Int, accumulate: Bool = false,
        threads: KernelThreads = .single
    ) {
        precondition(weight.rowCount == outputSize && weight.columnCount == inputSize,
                     "an NF4 weight of \(weight.rowCount)×\(weight.columnCount) given for \(outputSize)×\(inputSize)")
        precondition(!accumulate || bias == nil, "an accumulating product takes its bias in the output it adds to")
        if rowCount == 0 || outputSize == 0 { return }
        let tileCount = (outputSize + tileLength - 1) / tileLength
        threads.parallelFor(0..<tileCount) { tiles in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: tileLength * inputSize)
            defer { scratch.deallocate() }
            for tile in tiles {
                let rows = tile * tileLength..<Swift.min(outputSize, (tile + 1) * tileLength)
                weight.dequantize(rows: rows, into: scratch)
                let columns = output + rows.lowerBound
                if let bias {
                    for row in 0..<rowCount {
                        (columns + row * outputSize).update(from: bias + rows.lowerBound, count: rows.count)
                    }
                }
                BLAS.multiply(output: columns, outputStride: outputSize,
                              a: input, b: scratch, bTranspose: .transposed,
                              rowCount: rowCount, columnCount: rows.count, innerCount: inputSize,
                              beta: bias == nil && !accumulate ? 0 : 1)
            }
        }
    }

    /// inputGradient += outputGradient · x̂ ([rowCount, inputSize]). A frozen weight takes no
    /// gradient, so this is the whole backward.
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>, weight: NF4Matrix,
        rowCount: Int, inputSize: Int, outputSize: Int,
        threads: KernelThreads = .single
    ) {
        precondition(weight.rowCount == outputSize && weight.columnCount == inputSize,
                     "an NF4 weight of \(weight.rowCount)×\(weight.columnCount) given for \(outputSize)×\(inputSize)")
        if rowCount == 0 || inputSize == 0 { return }
        let tileCount = (inputSize + tileLength - 1) / tileLength
        threads.parallelFor(0..<tileCount) { tiles in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: outputSize * tileLength)
            defer { scratch.deallocate() }
            for tile in tiles {
                let columns = tile * tileLength..<Swift.min(inputSize, (tile + 1) * tileLength)
                weight.dequantize(rows: 0..<outputSize, columns: columns, into: scratch)
                BLAS.multiply(output: inputGradient + columns.lowerBound, outputStride: inputSize,
                              a: outputGradient, b: scratch,
                              rowCount: rowCount, columnCount: columns.count, innerCount: outputSize,
                              beta: 1)
            }
        }
    }
}
