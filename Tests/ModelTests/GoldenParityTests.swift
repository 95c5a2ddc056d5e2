import Foundation
import Model
import Runtime
import Tensors
import Testing

/// MeshLM's Llama against transformers' `LlamaForCausalLM` on the fixture that
/// tools/golden/make_llama_fixture.py wrote: logits, loss, every gradient, five AdamW steps.
@Suite struct GoldenParityTests {
    init() { useSingleThreadedBLAS() }

    /// One variant (`untied` or `tied`) of the fixture.
    struct Fixture {
        let file: HDF5File
        let group: String
        let config: LlamaConfig
        let batchSize: Int
        let sequenceLength: Int
        let tokens: [Int32]
        let positions: [Int32]
        let targets: [Int32]

        /// `group` of `llama_golden.h5`, or of `qwen_golden.h5` for the groups `qwen2` and `qwen3`.
        init(_ group: String) throws {
            let (name, script) = group.hasPrefix("qwen") ? ("qwen_golden", "make_qwen_fixture.py")
                : ["lora", "rslora", "dora"].contains(group) ? ("lora_golden", "make_lora_fixture.py") : ("llama_golden", "make_llama_fixture.py")
            let path = try #require(Bundle.module.path(forResource: name, ofType: "h5", inDirectory: "Fixtures"),
                                    "Fixtures/\(name).h5 is missing: run tools/golden/\(script)")
            file = try HDF5File.open(path)
            self.group = group
            let json = try file.read(UInt8.self, dataset: group + "/config_json")
            config = try JSONDecoder().decode(LlamaConfig.self, from: Data(json))
            try config.validate()
            let shape = try file.shape(of: group + "/input_ids")
            (batchSize, sequenceLength) = (shape[0], shape[1])
            tokens = try file.read(Int32.self, dataset: group + "/input_ids")
            positions = try file.read(Int32.self, dataset: group + "/position_ids")
            targets = try file.read(Int32.self, dataset: group + "/targets")
        }

        func floats(_ name: String) throws -> [Float] { try file.read(Float.self, dataset: group + "/" + name) }
        func doubles(_ name: String) throws -> [Double] { try file.read(Double.self, dataset: group + "/" + name) }

        /// The fixture's weights, loaded by HF name into an arena.
        func parameters() throws -> ArenaParameters {
            let parameters = ArenaParameters(layout: ParameterLayout(config: config))
            for entry in parameters.layout.entries {
                let name = "weights/" + entry.name
                #expect(try file.shape(of: group + "/" + name) == entry.shape, "\(entry.name)")
                let values = try floats(name)
                (parameters.parameters.pointer + entry.offset).update(from: values, count: entry.count)
            }
            return parameters
        }
    }

    @Test(arguments: ["untied", "tied"])
    func logitsLossAndGradientsMatchTransformers(variant: String) throws {
        try checkForwardAndBackward(try Fixture(variant), documentMasking: false, prefix: "")
    }

    /// transformers' `Qwen2ForCausalLM` (q/k/v biases) and `Qwen3ForCausalLM` (per-head QK-norm,
    /// head_dim ≠ hidden / heads, tied) through the same model: the layer `DecoderLayer` describes.
    @Test(arguments: ["qwen2", "qwen3"])
    func qwenLogitsLossAndGradientsMatchTransformers(variant: String) throws {
        let fixture = try Fixture(variant)
        #expect(fixture.config.modelType.rawValue == variant)
        try checkForwardAndBackward(fixture, documentMasking: false, prefix: "")
    }

    /// PEFT's LoRA (every projection, r 4, alpha 8), rsLoRA (q, v, down; r 8, alpha 16:
    /// scaling 16/√8) and DoRA (`use_dora`, every projection, r 4, alpha 8; magnitudes away from
    /// the row norms) on the Llama fixture's model: logits, loss and every adapter's gradient
    /// (DoRA: A, B and lora_magnitude_vector, the row norm detached), the base frozen (its
    /// weight-gradient products skipped, no gradients held).
    @Test(arguments: ["lora", "rslora", "dora"])
    func loraMatchesPEFT(variant: String) throws {
        let fixture = try Fixture(variant)
        let json = try fixture.file.read(UInt8.self, dataset: variant + "/lora_config_json")
        let settings = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        let modules = try #require(settings["target_modules"] as? [String])
        let lora = LoRAConfig(rank: try #require(settings["r"] as? Int), alpha: try #require(settings["lora_alpha"] as? Double),
                              targets: try #require(LoRAConfig.projections(named: modules)),
                              rankStabilized: try #require(settings["use_rslora"] as? Bool),
                              weightDecomposed: settings["use_dora"] as? Bool ?? false)
        #expect(lora.weightDecomposed == (variant == "dora"))
        #expect(lora.scaling == Float(try #require(settings["scaling"] as? Double)))
        let layout = ParameterLayout(config: fixture.config, lora: lora)
        let frozen = Set(layout.entries.filter { !$0.block.isAdapter }.map(\.name))
        let parameters = ArenaParameters(layout: layout.freezing(frozen))
        for entry in layout.entries {
            let values = try fixture.floats("weights/" + entry.name)
            #expect(values.count == entry.count, "\(entry.name)")
            (parameters.parameters.pointer + entry.offset).update(from: values, count: entry.count)
        }
        let model = LlamaModel(config: fixture.config, microBatchSize: fixture.batchSize, sequenceLength: fixture.sequenceLength,
                               frozen: frozen, lora: lora)
        let logits = model.logits(tokens: fixture.tokens, positions: fixture.positions, parameters: parameters)
        let logitsDifference = maxRelativeDifference(logits, try fixture.floats("logits"))
        let total = model.forward(tokens: fixture.tokens, targets: fixture.targets, positions: fixture.positions, parameters: parameters)
        let expectedLoss = try fixture.doubles("loss")[0]
        model.backward(lossScale: 1 / Float(total.targetCount), parameters: parameters)
        var worst = (name: "", difference: 0.0)
        for entry in parameters.layout.entries where entry.trainable {
            let difference = maxRelativeDifference(parameters.gradientValues(of: entry), try fixture.floats("grad/" + entry.name))
            if difference > worst.difference { worst = (entry.name, difference) }
        }
        print("golden \(variant): logits max rel diff \(logitsDifference), loss \(total.mean) vs \(expectedLoss), adapter gradients max rel diff \(worst.difference) (\(worst.name))")
        #expect(logitsDifference <= 1e-5)
        #expect(abs(total.mean - expectedLoss) / expectedLoss <= 1e-6)
        #expect(worst.difference <= 1e-4, "\(worst.name)")
        #expect(parameters.layout.entries.filter(\.trainable).count
                == (lora.weightDecomposed ? 3 : 2) * lora.targets.count * fixture.config.numHiddenLayers)
    }

    /// transformers masks attention per document when positions restart and no attention mask
    /// is given; MeshLM's `documentMasking` must agree.
    @Test func documentMaskedAttentionMatchesTransformers() throws {
        try checkForwardAndBackward(try Fixture("untied"), documentMasking: true, prefix: "document_masked/")
    }

    func checkForwardAndBackward(_ fixture: Fixture, documentMasking: Bool, prefix: String) throws {
        let label = fixture.group + (documentMasking ? " (document-masked)" : "")
        let parameters = try fixture.parameters()
        let model = LlamaModel(config: fixture.config, microBatchSize: fixture.batchSize,
                               sequenceLength: fixture.sequenceLength, documentMasking: documentMasking)
        let logits = model.logits(tokens: fixture.tokens, positions: fixture.positions, parameters: parameters)
        let logitsDifference = maxRelativeDifference(logits, try fixture.floats(prefix + "logits"))
        let total = model.forward(tokens: fixture.tokens, targets: fixture.targets, positions: fixture.positions,
                                  parameters: parameters)
        let expectedLoss = try fixture.doubles(prefix + "loss")[0]
        let lossDifference = abs(total.mean - expectedLoss) / abs(expectedLoss)
        model.backward(lossScale: 1 / Float(total.targetCount), parameters: parameters)
        var worst = (name: "", difference: 0.0)
        for entry in parameters.layout.entries {
            let difference = maxRelativeDifference(parameters.gradientValues(of: entry),
                                                   try fixture.floats(prefix + "grad/" + entry.name))
            #expect(difference <= 1e-4, "gradient of \(entry.name)")
            if difference > worst.difference { worst = (entry.name, difference) }
        }
        print("golden \(label): logits max rel diff \(logitsDifference), loss \(total.mean) vs \(expectedLoss)",
              "rel diff \(lossDifference), gradients max rel diff \(worst.difference) (\(worst.name))")
        #expect(logitsDifference <= 1e-4)
        #expect(lossDifference <= 1e-5)
    }

    /// Five steps of `Tensors.AdamW` over the arena, with the fixture's two parameter groups
    /// (weight decay on matrices, none on norm weights), give torch.optim.AdamW's losses.
    @Test(arguments: ["untied", "tied"])
    func adamWStepsMatchTorch(variant: String) throws {
        let fixture = try Fixture(variant)
        let parameters = try fixture.parameters()
        let model = LlamaModel(config: fixture.config, microBatchSize: fixture.batchSize,
                               sequenceLength: fixture.sequenceLength)
        let hyperparameters = try fixture.doubles("adamw/hyperparameters").map(Float.init)
        let decay = AdamW.Settings(learningRate: hyperparameters[0], beta1: hyperparameters[1], beta2: hyperparameters[2],
                                   epsilon: hyperparameters[3], weightDecay: hyperparameters[4])
        var noDecay = decay
        noDecay.weightDecay = 0
        let expected = try fixture.doubles("adamw/losses")
        let firstMoments = Tensor(shape: [parameters.layout.count])
        let secondMoments = Tensor(shape: [parameters.layout.count])
        var differences: [Double] = []
        for (index, expectedLoss) in expected.enumerated() {
            parameters.gradients.zero()
            let total = model.forward(tokens: fixture.tokens, targets: fixture.targets, positions: fixture.positions,
                                      parameters: parameters)
            differences.append(abs(total.mean - expectedLoss) / abs(expectedLoss))
            model.backward(lossScale: 1 / Float(total.targetCount), parameters: parameters)
            for entry in parameters.layout.entries {
                AdamW.update(parameters: parameters.parameters.pointer + entry.offset,
                             firstMoments: firstMoments.pointer + entry.offset,
                             secondMoments: secondMoments.pointer + entry.offset,
                             gradients: parameters.gradients.pointer + entry.offset,
                             count: entry.count, step: index + 1, settings: entry.decays ? decay : noDecay)
            }
        }
        print("golden \(variant): AdamW losses \(expected), per-step rel diff \(differences)")
        for difference in differences { #expect(difference <= 1e-5) }
    }
}
