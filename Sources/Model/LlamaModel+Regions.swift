import Foundation
import Tensors

/// Where the model meets tensor and sequence parallelism: the edges of the parallel regions
/// (`TensorParallelRegions`; the identity on one device) and the vocabulary-parallel loss.
extension LlamaModel {
    /// The loss when this rank holds a slice of the vocabulary: partial log-sum-exp and target
    /// logits per row, combined over the tensor group (a maximum, then one sum of [2, B·T]).
    func vocabularyParallelLoss(vocabularyStart: Int) -> CrossEntropy.Total {
        let a = activations
        let n = tokenCount
        let sums = vocabularyStatistics.pointer, targetLogits = vocabularyStatistics.pointer + n
        CrossEntropy.partialForward(logSumExp: a.lossLogSumExp, targetLogits: targetLogits, logits: a.logits, targets: a.targets,
                                    rowCount: n, vocabularySize: config.vocabSize, vocabularyStart: vocabularyStart, threads: threads)
        sums.update(from: a.lossLogSumExp, count: n)
        regions.maximum(a.lossLogSumExp, count: n)
        for row in 0..<n { sums[row] = exp(sums[row] - a.lossLogSumExp[row]) }
        regions.sumPartials(sums, count: 2 * n)
        return CrossEntropy.finish(losses: a.losses, logSumExp: a.lossLogSumExp, sumOfExponentials: sums,
                                   targetLogits: targetLogits, targets: a.targets, rowCount: n)
    }

    /// Where a norm whose output enters a parallel region writes: the saved all-rows view, or,
    /// with sequence parallelism, this rank's rows before `enterRegion` gathers them.
    func normOutput(for allRows: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        activations.localNorm ?? allRows
    }

    /// Entering a parallel region, forward: sequence parallelism all-gathers the norm's output
    /// rows into `allRows`; otherwise the input is already whole (copy to region = identity).
    func enterRegion(_ allRows: UnsafeMutablePointer<Float>) {
        guard let local = activations.localNorm else { return }
        regions.allGather(local, into: allRows, localCount: localTokenCount * config.hiddenSize)
    }

    /// Where a row-parallel output (`o_proj`, `down_proj`, the vocabulary-parallel embedding)
    /// that ends up in the stream view `local` writes its partial sums.
    func partialOutput(for local: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        activations.fullRows ?? local
    }

    /// Leaving a parallel region, forward: the partial sums are summed over the tensor group —
    /// all-reduced in place, or reduce-scattered into this rank's rows with sequence parallelism.
    func leaveRegion(partial: UnsafeMutablePointer<Float>, into local: UnsafeMutablePointer<Float>) {
        if regions.splitsSequence {
            regions.reduceScatter(partial, into: local, localCount: localTokenCount * config.hiddenSize)
        } else {
            regions.sumPartials(local, count: tokenCount * config.hiddenSize)
        }
    }

    /// Entering a region, backward: the gradient of the norm's output (`normGradient`, this
    /// rank's partial) summed over the group — in place, or this rank's rows of it with sequence
    /// parallelism. Returns where it is.
    func reduceNormGradient() -> UnsafeMutablePointer<Float> {
        let a = activations
        if let local = a.localNormGradient {
            regions.reduceScatter(a.normGradient, into: local, localCount: localTokenCount * config.hiddenSize)
            return local
        }
        regions.sumPartials(a.normGradient, count: tokenCount * config.hiddenSize)
        return a.normGradient
    }

    /// Leaving a region, backward: the stream's gradient for all rows (identity, or an all-gather
    /// with sequence parallelism).
    func gatheredStreamGradient() -> UnsafeMutablePointer<Float> {
        let a = activations
        guard let allRows = a.fullRows else { return a.residualGradient }
        regions.allGather(a.residualGradient, into: allRows, localCount: localTokenCount * config.hiddenSize)
        return allRows
    }
}
