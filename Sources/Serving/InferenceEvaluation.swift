import Foundation
import Tensors

/// Next-token loss through the inference forward (`InferenceModel`), for what the training
/// model cannot load: a quantized checkpoint (`meshlm eval` on `ckpt quantize`'s output). A
/// window is prefilled in chunks of `chunkRows` rows into a fresh KV cache with every row's
/// logits kept, and each target's −log p is summed in Double, in token order.
public final class InferenceEvaluation {
    public let weights: InferenceWeights
    public let chunkRows: Int
    private let model: InferenceModel
    private let maximumLength: Int

    public init(weights: InferenceWeights, maximumLength: Int, chunkRows: Int = 64, threads: KernelThreads = .single) {
        precondition(maximumLength >= 1 && chunkRows >= 1, "bad window length \(maximumLength) or chunk \(chunkRows)")
        self.weights = weights
        self.chunkRows = chunkRows
        self.maximumLength = maximumLength
        model = InferenceModel(weights: weights, maximumRows: chunkRows, threads: threads)
    }

    /// Σ −log p(targets[i] | tokens[0...i]) over the positions whose target is not `ignored`.
    public func lossSum(tokens: [Int32], targets: [Int32], ignored: Int32) -> Double {
        precondition(tokens.count == targets.count && tokens.count <= maximumLength, "\(tokens.count) tokens, \(targets.count) targets")
        let blockSize = 16
        let blocks = (tokens.count + blockSize - 1) / blockSize
        let cache = KVBlockPool(blockCount: Swift.max(1, blocks), blockSize: blockSize, layerCount: weights.localConfig.numHiddenLayers,
                                slotWidth: weights.localConfig.numKeyValueHeads * weights.localConfig.headDim)
        let vocabulary = weights.config.vocabSize
        var sum = 0.0
        var start = 0
        while start < tokens.count {
            let end = Swift.min(start + chunkRows, tokens.count)
            var batch = ForwardBatch()
            batch.blockTables = [Array(0..<Swift.max(1, blocks))]
            for position in start..<end {
                batch.tokens.append(tokens[position])
                batch.positions.append(Int32(position))
                batch.sequenceIndices.append(0)
                batch.logitRows.append(position - start)
            }
            let logits = model.forward(batch, cache: cache)
            for position in start..<end where targets[position] != ignored {
                let row = UnsafeBufferPointer(rebasing: logits[(position - start) * vocabulary..<(position - start + 1) * vocabulary])
                var largest = -Double.infinity
                for value in row { largest = Swift.max(largest, Double(value)) }
                var total = 0.0
                for value in row { total += Foundation.exp(Double(value) - largest) }
                sum += largest + Foundation.log(total) - Double(row[Int(targets[position])])
            }
            start = end
        }
        return sum
    }
}
