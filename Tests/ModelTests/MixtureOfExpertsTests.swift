import Foundation
@testable import Model
import Tensors
import TensorComparison
import Testing

/// The sparse layers (`ExpertRouting`, `LlamaModel+Experts`): routing against its definition,
/// one expert against the dense MLP, gradients (router included, with both balancing losses, the
/// z-loss and capacity) against finite differences, and the same bits for any thread count and
/// with recomputation.
@Suite struct MixtureOfExpertsTests {
    init() { useSingleThreadedBLAS() }

    /// A tiny MoE model: 4 experts, top-2, of width 20 (so the 16-float vector tails run).
    static func tinyMoE(experts: Int = 4, topK: Int = 2, modelType: LlamaConfig.ModelType = .mixtral) -> LlamaConfig {
        var config = tinyConfig(modelType: modelType)
        config.numLocalExperts = experts
        config.numExpertsPerTok = topK
        config.intermediateSize = 20
        config.moeIntermediateSize = 20
        return config
    }

    @Test func routingPicksTheTopKAndDropsTheLeastProbableBeyondCapacity() {
        // 4 tokens, 3 experts, top-2; capacity ceil(0.75 · 4 · 2 / 3) = 2.
        let routing = ExpertRouting(tokenCount: 4, expertCount: 3, topK: 2, normalizesTopK: true, capacityFactor: 0.75)
        let logits: [Float] = [2, 1, 0,   // experts 0, 1
                               0, 3, 1,   // 1, 2
                               1, 1, 5,   // 2, then 0 (tie with 1: the lower expert)
                               4, 0, 2]   // 0, 2
        routing.logits.update(from: logits, count: logits.count)
        routing.route()
        #expect(routing.capacity == 2)
        let selected = Array(UnsafeBufferPointer(start: routing.selected, count: 8))
        #expect(selected == [0, 1, 1, 2, 2, 0, 0, 2])
        #expect(routing.routedCounts == [3, 2, 3])
        // Expert 0 got tokens 0, 2, 3: p(0|token 2) is the smallest, so token 2's slot is dropped;
        // expert 2 got tokens 1, 2, 3: p(2|token 1) is the smallest.
        let rows = Array(UnsafeBufferPointer(start: routing.slotRows, count: 8))
        #expect(rows[5] == -1 && rows[3] == -1, "\(rows)")
        #expect(routing.droppedCount == 2 && routing.keptCount == 6)
        #expect(routing.rows(of: 0) == 0..<2 && routing.rows(of: 1) == 2..<4 && routing.rows(of: 2) == 4..<6)
        // Expert order: expert 0's tokens 0, 3; expert 1's tokens 0, 1; expert 2's tokens 2, 3.
        let order = Array(UnsafeBufferPointer(start: routing.order, count: 6)).map { $0 / 2 }
        #expect(order == [0, 3, 0, 1, 2, 3])
        // Renormalized top-2 weights sum to 1; the softmax rows too.
        for token in 0..<4 {
            #expect(abs(routing.weights[2 * token] + routing.weights[2 * token + 1] - 1) < 1e-6)
            let p = (0..<3).reduce(Float(0)) { $0 + routing.probabilities[token * 3 + $1] }
            #expect(abs(p - 1) < 1e-6)
        }
    }

    /// With one expert (k = 1) the routing weight is exactly 1, so a sparse layer is the dense
    /// MLP with the same weights: the same logits, loss and gradients, bit for bit.
    @Test func oneExpertIsTheDenseMLP() {
        let sparse = Self.tinyMoE(experts: 1, topK: 1)
        var dense = sparse
        dense.modelType = .llama
        dense.numLocalExperts = 0
        dense.numExpertsPerTok = 0
        dense.intermediateSize = sparse.moeIntermediateSize
        let sparseLayout = ParameterLayout(config: sparse), denseLayout = ParameterLayout(config: dense)
        let sparseParameters = randomParameters(sparseLayout, seed: 31)
        let denseParameters = ArenaParameters(layout: denseLayout)
        func denseName(_ name: String) -> String {
            name.replacingOccurrences(of: "block_sparse_moe.experts.0.w1", with: "mlp.gate_proj")
                .replacingOccurrences(of: "block_sparse_moe.experts.0.w3", with: "mlp.up_proj")
                .replacingOccurrences(of: "block_sparse_moe.experts.0.w2", with: "mlp.down_proj")
        }
        for entry in sparseLayout.entries where entry.role != .router {
            let target = denseLayout.entry(named: denseName(entry.name))!
            (denseParameters.parameters.pointer + target.offset).update(from: sparseParameters.parameters.pointer + entry.offset, count: entry.count)
        }
        let batch = Batch(batchSize: 2, sequenceLength: 7, vocabularySize: sparse.vocabSize, seed: 32)
        let sparseModel = LlamaModel(config: sparse, microBatchSize: 2, sequenceLength: 7)
        let denseModel = LlamaModel(config: dense, microBatchSize: 2, sequenceLength: 7)
        let sparseLoss = step(sparseModel, batch, sparseParameters)
        let denseLoss = step(denseModel, batch, denseParameters)
        #expect(sparseLoss.lossSum == denseLoss.lossSum)
        for entry in sparseLayout.entries where entry.role != .router {
            let target = denseLayout.entry(named: denseName(entry.name))!
            let comparison = TensorDifference(sparseParameters.gradientValues(of: entry), denseParameters.gradientValues(of: target))
            #expect(comparison.differingCount == 0, "\(entry.name): \(comparison)")
        }
        // One expert: the router's gradient is 0 (softmax of one logit is constant).
        let router = sparseLayout.entries.first { $0.role == .router }!
        #expect(sparseParameters.gradientValues(of: router).allSatisfy { $0 == 0 })
    }

    /// Every trained tensor's gradient, the router's included, against central differences of
    /// the loss Σ w·log p + coef·balance + z_coef·z. A perturbation that changes a routing
    /// decision (a top-k or capacity choice: the loss is not differentiable there) is skipped.
    @Test(arguments: [("switch, renormalized, dropless", LlamaConfig.RouterAuxLossType.switch, true, 0.0, LlamaConfig.ModelType.mixtral),
                      ("hf, not renormalized, capacity 1", .hf, false, 1.0, .qwen3MoE),
                      ("switch, renormalized, capacity 0.75", .switch, true, 0.75, .qwen3MoE),
                      ("shared expert, switch, not renormalized, dropless", .switch, false, 0.0, .qwen2MoE)])
    func gradientsMatchFiniteDifferences(label: String, auxType: LlamaConfig.RouterAuxLossType, normalize: Bool, capacity: Double,
                                         modelType: LlamaConfig.ModelType) {
        var config = Self.tinyMoE(modelType: modelType)
        config.routerAuxLossType = auxType
        config.normTopkProb = normalize
        config.moeCapacityFactor = capacity
        config.routerAuxLossCoef = 0.5  // large, so its gradient is visible beside the loss's
        config.routerZLossCoef = 0.05
        if modelType == .qwen2MoE {
            config.attentionBias = true
            config.sharedExpertIntermediateSize = 18
        }
        let layout = ParameterLayout(config: config)
        // Seeds whose routing has no near tie (one would make most perturbations upstream of it
        // change a decision, and be skipped).
        let parameters = randomParameters(layout, seed: modelType == .qwen2MoE ? 47 : 41)
        let batch = Batch(batchSize: 2, sequenceLength: 7, vocabularySize: config.vocabSize, seed: 42)
        let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 7)
        var generator = SplitMix64(seed: 43)
        let weights: [Float] = (0..<14).map { index in index % 5 == 2 ? 0 : Float(generator.next() % 2001) / 1000 - 1 }
        func loss() -> Double {
            model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
            let figures = model.routerFigures!
            return zip(model.tokenLogProbabilities, weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
                + config.routerAuxLossCoef * figures.balanceLoss + config.routerZLossCoef * figures.zLoss
        }
        _ = loss()
        let decisions = model.expertActivations!.routingDecisions
        let counts = model.routerFigures!.routedCounts
        var unused = 0
        if capacity > 0 { #expect(model.routerFigures!.dropped > 0 || capacity >= 1, "\(label): capacity dropped nothing") }
        for index in weights.indices { model.logProbabilityGradient[index] = weights[index] }
        model.backward(parameters: parameters)
        let step: Float = 1e-2
        var (checked, skipped, worst) = (0, 0, (name: "", difference: 0.0))
        for entry in layout.entries {
            let analytic = parameters.gradientValues(of: entry)
            var sampler = SplitMix64(seed: 44, stream: UInt64(entry.offset))
            var samples = (0..<3).map { _ in Int(sampler.next() % UInt64(entry.count)) }
            samples.append(analytic.indices.max { abs(analytic[$0]) < abs(analytic[$1]) }!)
            var difference = 0.0, scale = 0.0
            for sample in samples {
                var changed = false
                let numeric = richardsonDifference(at: parameters.parameters.pointer + entry.offset + sample, step: step) {
                    defer { changed = changed || model.expertActivations!.routingDecisions != decisions }
                    return loss()
                }
                scale = max(scale, abs(Double(analytic[sample])))
                if changed { skipped += 1; continue }
                difference = max(difference, abs(numeric - Double(analytic[sample])))
            }
            guard scale > 0 else {
                // Only an expert that received no token in its layer has no gradient.
                guard case .layer(let layer) = entry.block, let expert = entry.role.expert else {
                    Issue.record("\(label): \(entry.name) has no gradient")
                    continue
                }
                #expect(counts[layer]?[expert] == 0, "\(label): \(entry.name) has no gradient but its expert received tokens")
                unused += 1
                continue
            }
            checked += 1
            let relative = difference / scale
            #expect(relative <= 2e-3, "\(label): \(entry.name): max |FD − analytic| \(difference) on gradients up to \(scale)")
            if relative > worst.difference { worst = (entry.name, relative) }
        }
        _ = loss()
        #expect(model.expertActivations!.routingDecisions == decisions)
        #expect(checked + unused == layout.entries.count && unused <= 6, "\(label): \(unused) tensors of unused experts")
        // Most samples (4 per tensor) are compared; a skip is a perturbation that crossed a near tie.
        #expect(skipped * 2 <= 4 * checked, "\(label): \(skipped) of \(4 * checked) samples changed the routing")
        print("finite differences (MoE \(label)): \(checked) tensors (\(unused) of unused experts left out), \(skipped) samples skipped, max rel diff", worst.difference, "(\(worst.name))")
    }

    /// Threads split the gathers, the combine and the products by fixed blocks: 1 and 3 kernel
    /// threads give the same bits; so does recomputation.
    @Test func threadsAndRecomputationGiveTheSameBits() {
        var config = Self.tinyMoE()
        config.moeCapacityFactor = 1.25
        config.routerZLossCoef = 0.01
        let layout = ParameterLayout(config: config)
        let batch = Batch(batchSize: 4, sequenceLength: 16, vocabularySize: config.vocabSize, seed: 52)
        func run(threads: Int, recompute: Bool) -> (Double, [Float]) {
            let parameters = randomParameters(layout, seed: 51)
            let model = LlamaModel(config: config, microBatchSize: 4, sequenceLength: 16, recompute: recompute,
                                   threads: KernelThreads(count: threads))
            let total = step(model, batch, parameters)
            return (total.lossSum, Array(UnsafeBufferPointer(start: parameters.gradients.pointer, count: layout.count)))
        }
        let reference = run(threads: 1, recompute: false)
        for (threads, recompute) in [(3, false), (1, true), (2, true)] {
            let other = run(threads: threads, recompute: recompute)
            #expect(other.0 == reference.0, "\(threads) threads, recompute \(recompute)")
            let comparison = TensorDifference(other.1, reference.1)
            #expect(comparison.differingCount == 0, "\(threads) threads, recompute \(recompute): \(comparison)")
        }
    }

    /// Qwen-MoE's layer choice: dense layers keep the MLP and intermediate_size.
    @Test func sparseStepAndMLPOnlyLayersChooseTheSparseLayers() throws {
        var config = Self.tinyMoE(modelType: .qwen3MoE)
        config.numHiddenLayers = 4
        config.intermediateSize = 36
        config.decoderSparseStep = 2
        try config.validate()
        #expect((0..<4).map { config.isSparse(layer: $0) } == [false, true, false, true])
        config.mlpOnlyLayers = [3]
        #expect((0..<4).map { config.isSparse(layer: $0) } == [false, true, false, false])
        let layout = ParameterLayout(config: config)
        #expect(layout.entry(named: "model.layers.0.mlp.gate_proj.weight")?.shape == [36, 24])
        #expect(layout.entry(named: "model.layers.1.mlp.experts.3.down_proj.weight")?.shape == [24, 20])
        #expect(layout.entry(named: "model.layers.1.mlp.gate.weight")?.shape == [4, 24])
        #expect(layout.count == ParameterLayout(config: config).count)
        #expect(config.parameterCount == layout.count)
        // A mixed model trains: loss and gradients are finite.
        let parameters = randomParameters(layout, seed: 61)
        let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 7)
        let total = step(model, Batch(batchSize: 2, sequenceLength: 7, vocabularySize: config.vocabSize, seed: 62), parameters)
        #expect(total.lossSum.isFinite && total.targetCount > 0)
        #expect(model.routerFigures?.routedCounts.keys.sorted() == [1])
    }

    @Test func badExpertConfigsAreRefused() {
        func refusal(_ change: (inout LlamaConfig) -> Void) -> String? {
            var config = Self.tinyMoE()
            change(&config)
            do { try config.validate(); return nil } catch { return "\(error)" }
        }
        #expect(refusal { _ in } == nil)
        #expect(refusal { $0.numExpertsPerTok = 5 }?.contains("num_experts_per_tok") == true)
        #expect(refusal { $0.numLocalExperts = 0 }?.contains("num_local_experts") == true)
        #expect(refusal { $0.modelType = .llama }?.contains("needs a mixture-of-experts model_type") == true)
        #expect(refusal { $0.moeIntermediateSize = 8 }?.contains("moe_intermediate_size") == true)
        #expect(refusal { $0.moeCapacityFactor = -1 }?.contains("moe_capacity_factor") == true)
        #expect(refusal { $0.decoderSparseStep = 2 }?.contains("mixtral") == true)
        #expect(refusal { $0.modelType = .qwen3MoE; $0.mlpOnlyLayers = [0, 1] }?.contains("leaves no layer with experts") == true)
        #expect(refusal { $0.modelType = .qwen3MoE; $0.mlpOnlyLayers = [7] }?.contains("mlp_only_layers") == true)
        #expect(refusal { $0.sharedExpertIntermediateSize = 8 }?.contains("qwen2_moe") == true)
        #expect(refusal { $0.modelType = .qwen2MoE }?.contains("attention_bias") == true)
    }
}
