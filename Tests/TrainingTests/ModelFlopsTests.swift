import Model
import Tensors
import Testing
import Training

/// The MFU numerator against hand counts, and against the 6·N + 12·L·H·T estimate it replaces.
@Suite struct ModelFlopsTests {
    /// vocab 10, hidden 8, ffn 12, 2 layers, 2 query heads / 1 KV head of width 4, T = 6, 4 × 4
    /// tiles. Per layer and token, forward linear: 2·(8·8 + 2·8·4 + 8·8 + 3·8·12) = 960; lm_head
    /// 2·8·10 = 160; so linear forward + backward 3·(2·960 + 160) = 6240. Attention: query tile
    /// 0 (rows 0–3) meets keys 0–3 (16 scores), tile 1 (rows 4–5) keys 0–5 (12): 28 score
    /// entries per head, where the causal triangle has 21; forward 2 products × 2·4 per entry,
    /// backward 4 products, over 2 layers × 2 heads, per token: 4·(448 + 896) / 6 = 896.
    @Test func tinyConfigMatchesAHandCount() {
        let config = LlamaConfig(vocabSize: 10, hiddenSize: 8, intermediateSize: 12, numHiddenLayers: 2,
                                 numAttentionHeads: 2, numKeyValueHeads: 1)
        let flops = ModelFlops(config, sequenceLength: 6, tiling: AttentionTiling(queryTileSize: 4, keyTileSize: 4))
        #expect(ModelFlops.forwardScoreCount(sequenceLength: 6, tiling: flops.tiling) == 28)
        #expect(ModelFlops.backwardScoreCount(sequenceLength: 6, tiling: flops.tiling) == 28)
        #expect(flops.linearForwardPerToken == 1920)
        #expect(flops.headForwardPerToken == 160)
        #expect(flops.attentionForwardPerToken * 6 == 1792)
        #expect(flops.attentionBackwardPerToken * 6 == 3584)
        #expect(flops.trainingPerToken == 7136)
        #expect(flops.forwardPerToken * 6 == 2080 * 6 + 1792)
    }

    /// The backward kernel walks key tiles and meets every query tile from the one holding the
    /// tile's first key: with 4-row query tiles and 3-column key tiles at T = 6 that is 3·6 for
    /// keys 0–2 and 3·6 again for keys 3–5 (query tile 0 holds key 3): 36 entries.
    @Test func unequalTilesCountWhatEachKernelVisits() {
        let tiling = AttentionTiling(queryTileSize: 4, keyTileSize: 3)
        #expect(ModelFlops.forwardScoreCount(sequenceLength: 6, tiling: tiling) == 28)
        #expect(ModelFlops.backwardScoreCount(sequenceLength: 6, tiling: tiling) == 36)
    }

    /// Square tiles dividing T execute T·(T + tile)/2 score entries: between the causal
    /// triangle T·(T + 1)/2 and the full T².
    @Test(arguments: [64, 128, 512, 1024])
    func squareTilesExecuteTheTriangleAndHalfTheDiagonalTiles(sequenceLength: Int) {
        let executed = ModelFlops.forwardScoreCount(sequenceLength: sequenceLength, tiling: .default)
        #expect(executed == sequenceLength * (sequenceLength + 64) / 2)
        #expect(executed == ModelFlops.backwardScoreCount(sequenceLength: sequenceLength, tiling: .default))
    }

    /// Executed FLOPs stay below 6·N + 12·L·H·T; within one tile (T ≤ 64) attention is a full
    /// T × T as the estimate assumes, so the two differ by exactly 6 × the embedding and norm
    /// weights, which take part in no matrix product.
    @Test func executedFlopsAreBelowTheEstimate() throws {
        let small = LlamaConfig(vocabSize: 32000, hiddenSize: 768, intermediateSize: 2048, numHiddenLayers: 12,
                                numAttentionHeads: 12, numKeyValueHeads: 4)
        let tiny = LlamaConfig(vocabSize: 2048, hiddenSize: 128, intermediateSize: 352, numHiddenLayers: 4,
                               numAttentionHeads: 4, numKeyValueHeads: 2)
        for (config, sequenceLength) in [(small, 512), (small, 1024), (tiny, 128), (tiny, 512), (small, 64), (tiny, 17)] {
            let flops = ModelFlops(config, sequenceLength: sequenceLength)
            #expect(flops.trainingPerToken > 0)
            #expect(flops.trainingPerToken < flops.estimatePerToken, "\(config.hiddenSize) at T \(sequenceLength)")
        }
        for config in [small, tiny] {
            let flops = ModelFlops(config, sequenceLength: 64)
            let unused = config.vocabSize * config.hiddenSize + (2 * config.numHiddenLayers + 1) * config.hiddenSize
            #expect(flops.estimatePerToken - flops.trainingPerToken == 6 * Double(unused))
        }
        // The 124M-class model at T = 512: 632.3 MFLOP executed per token against 804.6 estimated.
        let executed = ModelFlops(small, sequenceLength: 512)
        #expect(executed.trainingPerToken == 632_291_328)
        #expect(abs(executed.estimatePerToken - 804.6e6) < 0.1e6)
    }
}
