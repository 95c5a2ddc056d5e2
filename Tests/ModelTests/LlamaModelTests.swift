import Foundation
import Model
import Tensors
import TensorComparison
import Testing

@Suite struct LlamaModelTests {
    init() { useSingleThreadedBLAS() }

    struct Run {
        var totals: [CrossEntropy.Total]
        var gradients: [Float]
    }

    /// Two forward/backward steps (the second accumulating onto the first's gradients, on another
    /// batch) from the same parameters.
    func run(_ config: LlamaConfig, sequenceLength: Int = 9, recompute: Bool = false, documentMasking: Bool = false,
             threads: Int = 1, batches: [Batch], parameters: ArenaParameters) -> Run {
        let parameters = parameters.copy()
        let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: sequenceLength, recompute: recompute,
                               documentMasking: documentMasking, threads: KernelThreads(count: threads))
        let totals = batches.map { step(model, $0, parameters) }
        return Run(totals: totals, gradients: parameters.gradients.values)
    }

    /// Two batches of two rows; row 1 packs a document of 4 tokens and one of the rest.
    func packedBatches(_ config: LlamaConfig, sequenceLength: Int = 9) -> [Batch] {
        (0..<2).map { index in
            var batch = Batch(batchSize: 2, sequenceLength: sequenceLength, vocabularySize: config.vocabSize,
                              seed: 70 + UInt64(index))
            batch.positions[sequenceLength + 4..<2 * sequenceLength] = ArraySlice((0..<Int32(sequenceLength - 4)))
            return batch
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func recomputationIsBitwiseIdentical(tied: Bool, documentMasking: Bool) {
        let config = tinyConfig(tied: tied, layers: 3)
        let parameters = randomParameters(ParameterLayout(config: config), seed: 5)
        let batches = packedBatches(config)
        let stored = run(config, recompute: false, documentMasking: documentMasking, batches: batches, parameters: parameters)
        let recomputed = run(config, recompute: true, documentMasking: documentMasking, batches: batches, parameters: parameters)
        #expect(stored.totals == recomputed.totals)
        expectSameBits(recomputed.gradients, stored.gradients, "gradients, recomputed vs stored")
        #expect(stored.gradients.contains { $0 != 0 })
    }

    /// Large enough that the kernels really split: the head's sgemm into blocks of columns
    /// (logits) and rows (its weight gradient) — `ProductBlocks` cuts ≥ 2 × 1024 — SwiGLU
    /// (≥ 2¹⁴ elements per thread), two query tiles of attention.
    @Test(arguments: [false, true])
    func twoThreadsGiveTheSameBitsAsOne(documentMasking: Bool) {
        let config = LlamaConfig(vocabSize: 2100, hiddenSize: 64, intermediateSize: 256, numHiddenLayers: 2,
                                 numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 128,
                                 tieWordEmbeddings: true)
        let parameters = randomParameters(ParameterLayout(config: config), seed: 6, scale: 0.1)
        let batches = packedBatches(config, sequenceLength: 128)
        let single = run(config, sequenceLength: 128, documentMasking: documentMasking, threads: 1,
                         batches: batches, parameters: parameters)
        let threaded = run(config, sequenceLength: 128, documentMasking: documentMasking, threads: 2,
                           batches: batches, parameters: parameters)
        print("threads 1 vs 2: loss", single.totals.map(\.mean), threaded.totals.map(\.mean))
        #expect(single.totals == threaded.totals)
        expectSameBits(threaded.gradients, single.gradients, "gradients, threads 2 vs 1")
    }

    /// Tied: the logits read the embedding table, so its gradient is the lm_head gradient plus
    /// the embedding's scatter-add, as an untied model with lm_head = embed_tokens computes them
    /// separately.
    @Test func tiedEmbeddingGradientGetsBothContributions() {
        let tiedConfig = tinyConfig(tied: true), untiedConfig = tinyConfig(tied: false)
        let tiedLayout = ParameterLayout(config: tiedConfig), untiedLayout = ParameterLayout(config: untiedConfig)
        let tied = randomParameters(tiedLayout, seed: 8)
        let untied = ArenaParameters(layout: untiedLayout)
        for entry in tiedLayout.entries {
            let target = untiedLayout.entry(named: entry.name)!
            (untied.parameters.pointer + target.offset).update(from: tied.parameters.pointer + entry.offset, count: entry.count)
        }
        let embedding = tiedLayout.entry(named: "model.embed_tokens.weight")!
        let head = untiedLayout.entry(named: "lm_head.weight")!
        let untiedEmbedding = untiedLayout.entry(named: "model.embed_tokens.weight")!
        (untied.parameters.pointer + head.offset).update(from: tied.parameters.pointer + embedding.offset, count: embedding.count)

        let batch = Batch(batchSize: 2, sequenceLength: 9, vocabularySize: tiedConfig.vocabSize, seed: 9)
        let tiedTotal = step(LlamaModel(config: tiedConfig, microBatchSize: 2, sequenceLength: 9), batch, tied)
        let untiedTotal = step(LlamaModel(config: untiedConfig, microBatchSize: 2, sequenceLength: 9), batch, untied)
        #expect(tiedTotal == untiedTotal)
        let headPart = untied.gradientValues(of: head), embeddingPart = untied.gradientValues(of: untiedEmbedding)
        let sum = zip(headPart, embeddingPart).map(+)
        let difference = maxRelativeDifference(tied.gradientValues(of: embedding), sum)
        print("tied embedding gradient vs lm_head + embedding gradients: max rel diff", difference)
        #expect(difference <= 1e-6)
        // Both parts matter: tokens not in the batch get only the lm_head part.
        #expect(maxRelativeDifference(tied.gradientValues(of: embedding), headPart) > 1e-3)
        #expect(embeddingPart.contains { $0 != 0 } && headPart.contains { $0 != 0 })
        for entry in tiedLayout.entries where entry.name != embedding.name {
            expectSameBits(tied.gradientValues(of: entry), untied.gradientValues(of: untiedLayout.entry(named: entry.name)!), entry.name)
        }
    }

    @Test func initializationDependsOnlyOnSeedAndName() {
        let untiedLayout = ParameterLayout(config: tinyConfig(tied: false, layers: 4))
        let tiedLayout = ParameterLayout(config: tinyConfig(tied: true, layers: 4))
        let untied = Tensor(shape: [untiedLayout.count]), tied = Tensor(shape: [tiedLayout.count])
        let again = Tensor(shape: [untiedLayout.count]), otherSeed = Tensor(shape: [untiedLayout.count])
        LlamaModel.initialize(untied.pointer, layout: untiedLayout, config: tinyConfig(tied: false, layers: 4), seed: 42)
        LlamaModel.initialize(tied.pointer, layout: tiedLayout, config: tinyConfig(tied: true, layers: 4), seed: 42)
        LlamaModel.initialize(again.pointer, layout: untiedLayout, config: tinyConfig(tied: false, layers: 4), seed: 42)
        LlamaModel.initialize(otherSeed.pointer, layout: untiedLayout, config: tinyConfig(tied: false, layers: 4), seed: 43)
        expectSameBits(again.values, untied.values, "initialization, same seed twice")
        func values(_ tensor: Tensor, _ entry: ParameterLayout.Entry) -> [Float] {
            Array(UnsafeBufferPointer(start: tensor.pointer + entry.offset, count: entry.count))
        }
        // Same name, same values, wherever the layout puts the tensor.
        for entry in tiedLayout.entries {
            expectSameBits(values(tied, entry), values(untied, untiedLayout.entry(named: entry.name)!), entry.name)
        }
        let head = untiedLayout.entry(named: "lm_head.weight")!
        let embedding = untiedLayout.entry(named: "model.embed_tokens.weight")!
        #expect(values(untied, head) != values(untied, embedding))
        #expect(values(untied, head) != values(otherSeed, head))
        for entry in untiedLayout.entries {
            let v = values(untied, entry).map(Double.init)
            if entry.shape.count == 1 {
                #expect(v.allSatisfy { $0 == 1 }, "\(entry.name)")
                continue
            }
            let mean = v.reduce(0, +) / Double(v.count)
            let deviation = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
            let residualWriter = entry.name.contains("o_proj") || entry.name.contains("down_proj")
            let expected = residualWriter ? 0.02 / (2.0 * 4).squareRoot() : 0.02
            #expect(abs(deviation / expected - 1) < 0.1, "\(entry.name): standard deviation \(deviation)")
            #expect(abs(mean) < 4 * expected / Double(v.count).squareRoot() + 1e-4, "\(entry.name): mean \(mean)")
        }
    }

    @Test func recomputationNeedsLessActivationMemory() {
        let config = tinyConfig(layers: 4)
        let stored = LlamaModel.activationCount(config: config, microBatchSize: 2, sequenceLength: 9, recompute: false)
        let recomputed = LlamaModel.activationCount(config: config, microBatchSize: 2, sequenceLength: 9, recompute: true)
        // (L + 1)·N·C + S·N·(3C + 2Q + 2K + 3I + H + 2) + N·(C + V + 3) + N·(2C + 3I + 3Q + 3K)
        let (n, c, i, v, h, q, k) = (18, 24, 40, 37, 4, 24, 12)
        let perLayer = 3 * c + 2 * q + 2 * k + 3 * i + h + 2
        let rest = 5 * n * c + n * (c + v + 3) + n * (2 * c + 3 * i + 3 * q + 3 * k)
        #expect(stored == rest + 4 * n * perLayer)
        #expect(recomputed == rest + n * perLayer)
    }
}
