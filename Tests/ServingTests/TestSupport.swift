import Foundation
import Model
import Serving
import Tensors

/// OpenBLAS must run one thread (see KernelThreads); set once for the whole test process.
let singleThreadedBLAS: Void = { BLASLibrary.threadCount = 1 }()

func useSingleThreadedBLAS() {
    _ = singleThreadedBLAS
}

/// A small GQA model; sizes off the 16-float vector width so every kernel's scalar tail runs,
/// Llama-3 RoPE scaling and a tied or untied head.
func servingConfig(tied: Bool = false, vocabulary: Int = 300, layers: Int = 2,
                   modelType: LlamaConfig.ModelType = .llama) -> LlamaConfig {
    LlamaConfig(vocabSize: vocabulary, hiddenSize: 40, intermediateSize: 72, numHiddenLayers: layers, numAttentionHeads: 4,
                numKeyValueHeads: 2, maxPositionEmbeddings: 128, ropeTheta: 10_000,
                ropeScaling: RopeScaling(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 32),
                tieWordEmbeddings: tied, modelType: modelType)
}

/// Weights far from the 0.02 initialization, so logits are spread and greedy choices are stable.
func servingWeights(_ config: LlamaConfig, seed: UInt64 = 3, scale: Float = 0.3) -> InferenceWeights {
    let weights = InferenceWeights(config: config)
    for (index, entry) in weights.layout.entries.enumerated() {
        var generator = SplitMix64(seed: seed, stream: UInt64(index))
        for element in 0..<entry.count {
            let noise = generator.nextNormal()
            weights.parameters.pointer[entry.offset + element] = entry.role.isNorm ? 1 + 0.1 * noise : scale * noise
        }
    }
    return weights
}

func randomTokens(_ count: Int, vocabulary: Int, seed: UInt64) -> [Int32] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in Int32(generator.next() % UInt64(vocabulary)) }
}

/// The training model's logits for one sequence: [tokens.count, vocab].
func referenceLogits(_ weights: InferenceWeights, _ tokens: [Int32]) -> [Float] {
    let model = LlamaModel(config: weights.config, microBatchSize: 1, sequenceLength: tokens.count)
    return model.logits(tokens: tokens, positions: (0..<Int32(tokens.count)).map { $0 }, parameters: weights)
}

/// max |a − b| / max |b|.
func relativeDifference(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
    precondition(a.count == b.count)
    let scale = b.map(abs).max() ?? 1
    return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

/// Greedy reference: repeatedly runs the training model over the whole sequence.
func referenceGreedy(_ weights: InferenceWeights, prompt: [Int32], count: Int) -> [Int32] {
    var tokens = prompt
    let vocabulary = weights.config.vocabSize
    for _ in 0..<count {
        let logits = referenceLogits(weights, tokens)
        let last = Array(logits[(tokens.count - 1) * vocabulary..<tokens.count * vocabulary])
        let best = last.indices.max { last[$0] < last[$1] || (last[$0] == last[$1] && $0 > $1) } ?? 0
        tokens.append(Int32(best))
    }
    return Array(tokens[prompt.count...])
}

/// One sequence's prompt as a single prefill: every token's logits, in KV blocks 0, 1, 2 of
/// `model`'s config (blocks of 4: up to 12 tokens), with a cache to run it in.
func promptPrefill(_ tokens: [Int32], config: LlamaConfig) -> (ForwardBatch, KVBlockPool) {
    precondition(tokens.count <= 12, "three blocks of four hold 12 tokens")
    let cache = KVBlockPool(blockCount: 4, blockSize: 4, layerCount: config.numHiddenLayers,
                            slotWidth: config.numKeyValueHeads * config.headDim)
    var batch = ForwardBatch()
    batch.blockTables = [[0, 1, 2]]
    for position in tokens.indices {
        batch.tokens.append(tokens[position])
        batch.positions.append(Int32(position))
        batch.sequenceIndices.append(0)
        batch.logitRows.append(position)
    }
    return (batch, cache)
}
