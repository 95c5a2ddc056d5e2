import Foundation
import Model
import Tensors
import Testing

/// The whole model's backward against central differences of its fp32 forward, on a few sampled
/// elements of every tensor.
@Suite struct GradientCheckTests {
    init() { useSingleThreadedBLAS() }

    /// The loss sum (every token's ∂loss/∂log p = −1), and a weighted sum of log-probabilities
    /// with a weight per token — positive, negative and zero, as objectives give them; Llama,
    /// Qwen2 (q/k/v biases) and Qwen3 (QK-norm) layers.
    @Test(arguments: [(false, false, false, LlamaConfig.ModelType.llama), (true, true, false, .llama), (false, true, true, .llama),
                      (false, true, true, .qwen2), (true, false, true, .qwen3)])
    func gradientsMatchFiniteDifferences(tied: Bool, documentMasking: Bool, weighted: Bool, modelType: LlamaConfig.ModelType) {
        let config = tinyConfig(tied: tied, modelType: modelType)
        var generator = SplitMix64(seed: 24)
        let weights: [Float] = (0..<14).map { index in
            weighted ? (index % 5 == 2 ? 0 : Float(generator.next() % 2001) / 1000 - 1) : -1
        }
        check(config, documentMasking: documentMasking,
              label: "\(modelType), tied \(tied), document masking \(documentMasking), weighted \(weighted)") { model, parameters in
            // Gradients of the loss sum (lossScale 1): larger than the mean's, so fp32 rounding of
            // the loss matters less relative to them.
            if weighted {
                for index in weights.indices { model.logProbabilityGradient[index] = weights[index] }
                model.backward(parameters: parameters)
            } else {
                model.backward(lossScale: 1, parameters: parameters)
            }
        } loss: { model in
            // Σ wₜ · log pₜ (for w = −1: the loss sum).
            zip(model.tokenLogProbabilities, weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
    }

    /// A scalar (score) head with 2 labels: Σ w · score over positions and labels, with weights
    /// of both signs and zeros (an objective reads only some positions).
    @Test func scoreHeadGradientsMatchFiniteDifferences() {
        var config = tinyConfig(modelType: .qwen2)
        config.numLabels = 2
        var generator = SplitMix64(seed: 25)
        let weights: [Float] = (0..<28).map { index in index % 3 == 1 ? 0 : Float(generator.next() % 2001) / 1000 - 1 }
        check(config, documentMasking: true, label: "score head (2 labels)") { model, parameters in
            for index in weights.indices { model.scoreGradient[index] = weights[index] }
            model.backward(parameters: parameters)
        } loss: { model in
            zip(model.scores, weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
    }

    /// LoRA adapters (A and B random, so both have gradients) on every projection of a Qwen2
    /// model, the base frozen; with rsLoRA scaling (alpha 2√3, so both cases scale by 2: at the
    /// test's random magnitudes a larger scaling makes the loss so curved that differences at
    /// this step are no reference — the golden test checks rsLoRA at PEFT's own 5.66). Rank 8
    /// takes the fused backward kernel (`LowRankAdapter.outputGradientProducts`), rank 3 sgemm.
    @Test(arguments: [(false, 3), (true, 3), (false, 8)])
    func loraGradientsMatchFiniteDifferences(rankStabilized: Bool, rank: Int) {
        let config = tinyConfig(modelType: .qwen2)
        // Scaling 2 at rank 3; at rank 8, 0.75, so s·B·A (a sum of r products) is as large.
        let lora = LoRAConfig(rank: rank, alpha: rank == 3 ? (rankStabilized ? 3.4641016 : 6) : 6, rankStabilized: rankStabilized)
        var generator = SplitMix64(seed: 26)
        let weights: [Float] = (0..<14).map { index in index % 5 == 2 ? 0 : Float(generator.next() % 2001) / 1000 - 1 }
        check(config, lora: lora, documentMasking: true, label: "LoRA r \(rank)\(rankStabilized ? ", rsLoRA" : "")") { model, parameters in
            for index in weights.indices { model.logProbabilityGradient[index] = weights[index] }
            model.backward(parameters: parameters)
        } loss: { model in
            zip(model.tokenLogProbabilities, weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
    }

    /// LoRA dropout (p 0.3) with a fixed mask — the same draw at every forward, as a training
    /// forward and its backward share one — and DoRA (with and without that dropout).
    ///
    /// DoRA detaches its row norm ‖W + s·B·A‖ from the gradient (as the paper and PEFT do), so
    /// A's and B's gradients are not the derivative of the forward and differences cannot check
    /// them (PEFT parity does: `GoldenParityTests`); the magnitudes' are, exactly, and layer 0's
    /// magnitudes' gradients pass through every DoRA projection's input gradient in layer 1
    /// (with dropout: through the mask and PEFT's (k − 1)·x̃·Wᵀ term), which checks those too.
    @Test(arguments: ["dropout", "dora", "dora+dropout"])
    func adapterVariantGradientsMatchFiniteDifferences(variant: String) {
        let config = tinyConfig(modelType: .qwen2)
        let dora = variant.hasPrefix("dora")
        // Dropout scales the kept inputs by 1 / (1 − p): scaling 1 for plain LoRA keeps the loss
        // as curved as the LoRA check's at scaling 2 (see there).
        let lora = LoRAConfig(rank: 3, alpha: dora ? 6 : 3, weightDecomposed: dora, dropout: variant.hasSuffix("dropout") ? 0.3 : 0)
        var generator = SplitMix64(seed: 27)
        let weights: [Float] = (0..<14).map { index in index % 5 == 2 ? 0 : Float(generator.next() % 2001) / 1000 - 1 }
        check(config, lora: lora, documentMasking: true, label: "LoRA \(variant)",
              dropout: lora.dropout > 0 ? AdapterDropoutDraw(seed: 7, step: 3, firstRow: 5) : nil,
              checks: { !dora || isMagnitude($0.role) }) { model, parameters in
            for index in weights.indices { model.logProbabilityGradient[index] = weights[index] }
            model.backward(parameters: parameters)
        } loss: { model in
            zip(model.tokenLogProbabilities, weights).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
    }

    /// Runs forward, `backward` (which seeds the head's gradient and runs the model's backward),
    /// then compares each tensor's gradient at a few elements with central differences of
    /// `loss` (read after a forward). `dropout` is the LoRA dropout draw of every forward;
    /// `checks` picks the tensors compared (every trained one by default).
    func check(_ config: LlamaConfig, lora: LoRAConfig? = nil, documentMasking: Bool, label: String,
               dropout: AdapterDropoutDraw? = nil, checks: (ParameterLayout.Entry) -> Bool = { _ in true },
               backward: (LlamaModel, ArenaParameters) -> Void, loss: (LlamaModel) -> Double) {
        let (batchSize, sequenceLength) = (2, 7)
        // With adapters, the base is frozen (as LoRA trains) and only A and B are checked.
        let layout = ParameterLayout(config: config, lora: lora)
        let frozen = lora == nil ? [] : Set(layout.entries.filter { !$0.block.isAdapter }.map(\.name))
        let parameters = randomParameters(layout.freezing(frozen), seed: 21)
        // DoRA's magnitudes 1.5 + N(0, 0.3²): near the row norms of W (0.3·√24 ≈ 1.5), as they start.
        for entry in layout.entries where isMagnitude(entry.role) {
            for index in 0..<entry.count { parameters.parameters.pointer[entry.offset + index] += 1.5 }
        }
        var batch = Batch(batchSize: batchSize, sequenceLength: sequenceLength, vocabularySize: config.vocabSize, seed: 22)
        batch.positions[sequenceLength + 3..<2 * sequenceLength] = [0, 1, 2, 3]
        let model = LlamaModel(config: config, microBatchSize: batchSize, sequenceLength: sequenceLength,
                               documentMasking: documentMasking, frozen: frozen, lora: lora)
        model.adapterDropout = dropout
        model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
        backward(model, parameters)
        func lossSum() -> Double {
            model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
            return loss(model)
        }
        // Central differences at h and 2h, Richardson-extrapolated ((4·D(h) − D(2h)) / 3, error
        // O(h⁴)): the step can then be large enough that fp32 rounding of the loss stays ~1e-4 of
        // the gradient (plain central differences reach only ~2e-3 at their best step here).
        // 2e-2 rather than 1e-2: QK-norm weights (one [head_dim] vector that every head of every
        // token multiplies) sum many cancelling terms, and at 1e-2 fp32 rounding reached 1e-3 of
        // their gradient; every tensor's error fell at 2e-2 (rounding, not truncation, dominates).
        let step: Float = 2e-2
        var worst = (name: "", difference: 0.0)
        var checked = 0
        for entry in parameters.layout.entries where entry.trainable && checks(entry) {
            checked += 1
            let analytic = parameters.gradientValues(of: entry)
            var generator = SplitMix64(seed: 23, stream: UInt64(entry.offset))
            // Four elements per tensor, and the largest gradient so each check measures something.
            var samples = (0..<4).map { _ in Int(generator.next() % UInt64(entry.count)) }
            samples.append(analytic.indices.max { abs(analytic[$0]) < abs(analytic[$1]) }!)
            var difference = 0.0, scale = 0.0
            for sample in samples {
                let numeric = richardsonDifference(at: parameters.parameters.pointer + entry.offset + sample, step: step,
                                                   loss: lossSum)
                difference = max(difference, abs(numeric - Double(analytic[sample])))
                scale = max(scale, abs(Double(analytic[sample])))
            }
            // Relative to the tensor's largest gradient (always among the samples).
            let relative = difference / scale
            #expect(relative <= 1e-3, "\(label): \(entry.name): max |FD − analytic| \(difference) on gradients up to \(scale)")
            if relative > worst.difference { worst = (entry.name, relative) }
        }
        #expect(checked > 0, "\(label): no tensor checked")
        print("finite differences (\(label)): \(checked) tensors, max rel diff", worst.difference, "(\(worst.name))")
    }
}

/// Whether `role` is a DoRA magnitude vector.
func isMagnitude(_ role: TensorRole) -> Bool {
    if case .loraMagnitude = role { return true }
    return false
}
