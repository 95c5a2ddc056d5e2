import Foundation

/// Cross-entropy over a vocabulary split across ranks (tensor parallel): no rank holds a row's
/// whole logits, so the fused forward becomes two kernels around two reductions.
///
///     logits        [rowCount, vocabularySize]  this rank's slice: ids vocabularyStart ..< +vocabularySize
///     logSumExp     [rowCount]  partial: log Σ exp over the slice; after `finish`, over the vocabulary
///     targetLogits  [rowCount]  the target's logit if the slice holds it, else 0 (summed over
///                               ranks, exactly one rank contributes)
///
/// The caller combines ranks between `partialForward` and `finish`: M = max over ranks of the
/// partial log-sum-exp, then S = Σ over ranks of exp(partial − M) and the target logits summed;
/// the row's log-sum-exp is M + log S (Megatron's vocab-parallel cross-entropy, with the
/// per-rank maximum folded into the partial log-sum-exp).
extension CrossEntropy {
    public static func partialForward(
        logSumExp: UnsafeMutablePointer<Float>, targetLogits: UnsafeMutablePointer<Float>,
        logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        rowCount: Int, vocabularySize: Int, vocabularyStart: Int, ignoreIndex: Int32 = defaultIgnoreIndex,
        threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<rowCount) { rows in
            for row in rows {
                let target = targets[row]
                guard target != ignoreIndex else {
                    logSumExp[row] = 0
                    targetLogits[row] = 0
                    continue
                }
                let x = logits + row * vocabularySize
                logSumExp[row] = rowLogSumExp(x, count: vocabularySize)
                let column = Int(target) - vocabularyStart
                targetLogits[row] = column >= 0 && column < vocabularySize ? x[column] : 0
            }
        }
    }

    /// Turns the ranks' combined figures into losses. On entry `logSumExp` holds M (the maximum
    /// over ranks of the partial log-sum-exp) and `sumOfExponentials` S; on return `logSumExp`
    /// holds M + log S, which `backward` reads. Returns the total over counted rows.
    public static func finish(
        losses: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
        sumOfExponentials: UnsafePointer<Float>, targetLogits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
        rowCount: Int, ignoreIndex: Int32 = defaultIgnoreIndex
    ) -> Total {
        var total = Total(lossSum: 0, targetCount: 0)
        for row in 0..<rowCount {
            guard targets[row] != ignoreIndex else {
                losses[row] = 0
                logSumExp[row] = 0
                continue
            }
            logSumExp[row] += log(sumOfExponentials[row])
            losses[row] = logSumExp[row] - targetLogits[row]
            total.lossSum += Double(losses[row])
            total.targetCount += 1
        }
        return total
    }
}
