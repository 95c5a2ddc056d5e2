import Model
@testable import Training
import Testing

/// The routing figures a step logs, and the collapsed-router warning's rule.
@Suite struct RouterMetricsTests {
    func metrics(experts: Int = 4, topK: Int = 2) -> RouterMetrics {
        var config = LlamaConfig(vocabSize: 32, hiddenSize: 16, intermediateSize: 8, numHiddenLayers: 3, numAttentionHeads: 2,
                                 modelType: .qwen3MoE)
        config.numLocalExperts = experts
        config.numExpertsPerTok = topK
        config.mlpOnlyLayers = [1]
        return RouterMetrics(config)!
    }

    @Test func aRouterSendingNearlyEveryTokenToOneExpertIsCollapsed() {
        let router = metrics()
        #expect(router.sparseLayers == [0, 2])
        // 100 tokens, 200 slots: layer 0 balanced, layer 2 sends 95 tokens to expert 3.
        let loads = [0: [50, 50, 50, 50], 2: [40, 30, 35, 95]]
        let collapsed = router.collapsed(loads)
        #expect(collapsed.count == 1)
        #expect(collapsed.first?.layer == 2 && collapsed.first?.expert == 3)
        #expect(abs((collapsed.first?.share ?? 0) - 0.95) < 1e-12)
        // Every token to every expert (k = E) is no collapse.
        #expect(metrics(experts: 2, topK: 2).collapsed([0: [100, 100]]).isEmpty)
    }

    @Test func aDenseModelHasNoRouterMetrics() {
        #expect(RouterMetrics(LlamaConfig(vocabSize: 32, hiddenSize: 16, intermediateSize: 8, numHiddenLayers: 2, numAttentionHeads: 2)) == nil)
    }
}
