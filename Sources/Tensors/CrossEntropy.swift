import Foundation

/// Softmax and cross-entropy fused over vocabulary logits, with ignored rows.
///
///     logits     [rowCount, vocabularySize]
///     targets    [rowCount]   Int32 class ids, or `ignoreIndex` for rows that do not count
///     losses     [rowCount]   −log softmax(logits)[target], 0 for ignored rows
///     logSumExp  [rowCount]   saved for backward (0 for ignored rows)
///
/// Memory-lean: no probabilities are stored; backward recomputes them from the logits and the
/// saved log-sum-exp, one row at a time while the row is in cache.
public enum CrossEntropy {
    /// Hugging Face's and PyTorch's default label for positions without a target.
    public static let defaultIgnoreIndex: Int32 = -100

    /// The loss of a batch: its sum over counted rows, and how many rows counted.
    public struct Total: Sendable, Equatable {
        /// Σ losses over rows whose target is not ignored, summed in row order in Double.
        public var lossSum: Double
        /// Rows whose target is not ignored.
        public var targetCount: Int
        /// `lossSum / targetCount`, or 0 when nothing counted.
        public var mean: Double { targetCount == 0 ? 0 : lossSum / Double(targetCount) }

        public init(lossSum: Double, targetCount: Int) {
            self.lossSum = lossSum
            self.targetCount = targetCount
        }
    }

    /// Returns the total over counted rows; data parallel ranks add totals before dividing, so
    /// the mean is over the global batch.
    @discardableResult
    public static func forward(
        losses: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        rowCount: Int, vocabularySize: Int, ignoreIndex: Int32 = defaultIgnoreIndex,
        threads: KernelThreads = .single
    ) -> Total {
        threads.parallelFor(0..<rowCount) { rows in
            for row in rows {
                let target = targets[row]
                if target == ignoreIndex {
                    losses[row] = 0
                    logSumExp[row] = 0
                    continue
                }
                precondition(target >= 0 && Int(target) < vocabularySize,
                             "target \(target) of row \(row) is outside the vocabulary of \(vocabularySize)")
                let x = logits + row * vocabularySize
                let value = rowLogSumExp(x, count: vocabularySize)
                logSumExp[row] = value
                losses[row] = value - x[Int(target)]
            }
        }
        var total = Total(lossSum: 0, targetCount: 0)
        for row in 0..<rowCount where targets[row] != ignoreIndex {
            total.lossSum += Double(losses[row])
            total.targetCount += 1
        }
        return total
    }

    /// Writes `logitsGradient = (softmax(logits) − onehot(target)) · scale` per counted row, and 0
    /// for ignored rows.
    ///
    /// Unlike the other kernels this *writes*: the loss starts backward, so there is nothing to
    /// accumulate into, and writing lets `logitsGradient` be the `logits` buffer itself (the
    /// largest activation turns into its gradient in place). `scale` is usually
    /// 1 / (global target count).
    public static func backward(
        logitsGradient: UnsafeMutablePointer<Float>,
        logSumExp: UnsafePointer<Float>, logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        rowCount: Int, vocabularySize: Int, scale: Float, ignoreIndex: Int32 = defaultIgnoreIndex,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<rowCount) { rows in
            for row in rows {
                let x = logits + row * vocabularySize
                let dx = logitsGradient + row * vocabularySize
                let target = targets[row]
                if target == ignoreIndex {
                    dx.update(repeating: 0, count: vocabularySize)
                    continue
                }
                let shift = Vector.Lanes(repeating: logSumExp[row])
                var index = 0
                while index + Vector.width <= vocabularySize {
                    Vector.store(Vector.exp(Vector.load(x + index) - shift) * scale, dx + index)
                    index += Vector.width
                }
                while index < vocabularySize {
                    dx[index] = Vector.exp(x[index] - logSumExp[row]) * scale
                    index += 1
                }
                dx[Int(target)] -= scale
            }
        }
    }

    /// log Σ exp(x) over one row, shifted by a running maximum so nothing overflows.
    ///
    /// One pass over memory, per lane: each block of 256 elements is scanned for its lane-wise
    /// maximum and then exponentiated while it is still in L1, after rescaling the lanes' running
    /// sums to the new maximum. Small blocks let the out-of-order core load the next block while
    /// it exponentiates this one; two passes over a vocabulary-sized row would read it twice.
    static func rowLogSumExp(_ x: UnsafePointer<Float>, count: Int) -> Float {
        let blockSize = 256
        let vectorEnd = count / Vector.width * Vector.width
        var maximum = Vector.Lanes(repeating: -.infinity)
        var sum = Vector.Lanes()
        var blockStart = 0
        while blockStart < vectorEnd {
            let blockEnd = Swift.min(blockStart + blockSize, vectorEnd)
            var blockMaximum = Vector.load(x + blockStart)
            var index = blockStart + Vector.width
            while index < blockEnd {
                blockMaximum = Vector.maximum(blockMaximum, Vector.load(x + index))
                index += Vector.width
            }
            let newMaximum = Vector.maximum(maximum, blockMaximum)
            sum *= Vector.exp(maximum - newMaximum)
            maximum = newMaximum
            index = blockStart
            while index < blockEnd {
                sum += Vector.exp(Vector.load(x + index) - maximum)
                index += Vector.width
            }
            blockStart = blockEnd
        }
        // Fold the lanes into one maximum and sum, then the ragged tail.
        var rowMaximum = vectorEnd > 0 ? Vector.horizontalMaximum(maximum) : -Float.infinity
        for index in vectorEnd..<count {
            rowMaximum = Swift.max(rowMaximum, x[index])
        }
        var rowSum = vectorEnd > 0 ? Vector.horizontalSum(sum * Vector.exp(maximum - rowMaximum)) : 0
        for index in vectorEnd..<count {
            rowSum += Vector.exp(x[index] - rowMaximum)
        }
        return rowMaximum + log(rowSum)
    }
}
