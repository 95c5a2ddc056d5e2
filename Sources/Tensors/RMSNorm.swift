/// Root-mean-square normalization as in Llama (`LlamaRMSNorm`):
/// `output = (input · rstd) · weight`, rstd = 1 / sqrt(mean(input²) + epsilon) per row.
///
///     input, output  [rowCount, hiddenSize]
///     weight         [hiddenSize]
///     rstd           [rowCount]   saved for backward
public enum RMSNorm {
    public static func forward(
        output: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rowCount: Int, hiddenSize: Int, epsilon: Float,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<rowCount, minimumChunk: 8) { rows in
            for row in rows {
                let x = input + row * hiddenSize
                let y = output + row * hiddenSize
                let meanSquare = Vector.dot(x, x, count: hiddenSize) / Float(hiddenSize)
                let scale = 1 / (meanSquare + epsilon).squareRoot()
                rstd[row] = scale
                var index = 0
                while index + Vector.width <= hiddenSize {
                    Vector.store(Vector.load(x + index) * scale * Vector.load(weight + index), y + index)
                    index += Vector.width
                }
                while index < hiddenSize {
                    y[index] = x[index] * scale * weight[index]
                    index += 1
                }
            }
        }
    }

    /// Accumulates, with g = outputGradient · weight and r = rstd,
    ///
    ///     inputGradient  += r·g − input · r³·mean(g · input)
    ///     weightGradient += Σ_rows outputGradient · input · r    (skipped if nil: a frozen weight)
    ///
    /// With one thread each row is read once for both. With more, rows are split for the input
    /// gradient and columns for the weight gradient (a second pass), so the weight gradient is
    /// summed in row order and comes out bitwise the same for any thread count.
    public static func backward(
        inputGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>?,
        outputGradient: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rowCount: Int, hiddenSize: Int,
        threads: KernelThreads = .single
    ) {
        if threads.count == 1 {
            for row in 0..<rowCount {
                accumulateInputGradient(row: row, inputGradient, outputGradient, rstd, input, weight, hiddenSize)
                guard let weightGradient else { continue }
                accumulateWeightGradient(row: row, columns: 0..<hiddenSize, weightGradient,
                                         outputGradient, rstd, input, hiddenSize)
            }
            return
        }
        threads.parallelFor(0..<rowCount, minimumChunk: 8) { rows in
            for row in rows {
                accumulateInputGradient(row: row, inputGradient, outputGradient, rstd, input, weight, hiddenSize)
            }
        }
        guard let weightGradient else { return }
        threads.parallelFor(0..<hiddenSize, minimumChunk: 64) { columns in
            for row in 0..<rowCount {
                accumulateWeightGradient(row: row, columns: columns, weightGradient,
                                         outputGradient, rstd, input, hiddenSize)
            }
        }
    }

    @inline(__always)
    static func accumulateInputGradient(
        row: Int, _ inputGradient: UnsafeMutablePointer<Float>, _ outputGradient: UnsafePointer<Float>,
        _ rstd: UnsafePointer<Float>, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
        _ hiddenSize: Int
    ) {
        let x = input + row * hiddenSize
        let dy = outputGradient + row * hiddenSize
        let dx = inputGradient + row * hiddenSize
        let r = rstd[row]
        // Σ dy·w·x, the projection of the gradient onto the input direction.
        var index = 0
        var lanes = Vector.Lanes()
        while index + Vector.width <= hiddenSize {
            lanes.addProduct(Vector.load(dy + index) * Vector.load(weight + index), Vector.load(x + index))
            index += Vector.width
        }
        var projection = Vector.horizontalSum(lanes)
        while index < hiddenSize {
            projection += dy[index] * weight[index] * x[index]
            index += 1
        }
        let correction = r * r * r * projection / Float(hiddenSize)
        index = 0
        while index + Vector.width <= hiddenSize {
            let g = Vector.load(dy + index) * Vector.load(weight + index)
            Vector.store(Vector.load(dx + index) + (g * r - Vector.load(x + index) * correction), dx + index)
            index += Vector.width
        }
        while index < hiddenSize {
            dx[index] += dy[index] * weight[index] * r - x[index] * correction
            index += 1
        }
    }

    @inline(__always)
    static func accumulateWeightGradient(
        row: Int, columns: Range<Int>, _ weightGradient: UnsafeMutablePointer<Float>,
        _ outputGradient: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>, _ input: UnsafePointer<Float>,
        _ hiddenSize: Int
    ) {
        let x = input + row * hiddenSize
        let dy = outputGradient + row * hiddenSize
        let r = rstd[row]
        var index = columns.lowerBound
        while index + Vector.width <= columns.upperBound {
            Vector.store(Vector.load(weightGradient + index) + Vector.load(dy + index) * (Vector.load(x + index) * r),
                         weightGradient + index)
            index += Vector.width
        }
        while index < columns.upperBound {
            weightGradient[index] += dy[index] * (x[index] * r)
            index += 1
        }
    }
}
