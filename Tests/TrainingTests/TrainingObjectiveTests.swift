import Foundation
import Model
import Runtime
import Tensors
import Testing
@testable import Training

/// The objectives' arithmetic on a hand-made micro-batch: two rows of 4, the second packing two
/// sequences (positions restart), one ignored target.
@Suite struct TrainingObjectiveTests {
    let batch = MicroBatch(tokens: [1, 2, 3, 4, 5, 6, 7, 8], targets: [2, 3, 4, -100, 6, 7, 8, 9],
                           positions: [0, 1, 2, 3, 0, 1, 0, 1], lossWeights: [1, 0, 2, 5, 1, 1, 0.5, 0.5], sequenceLength: 4)
    let logProbabilities: [Float] = [-1, -2, -0.5, 0, -3, -1, -2, -4]

    func run(_ objective: any TrainingObjective, scale: Double) -> (ObjectiveOutput, [Float]) {
        var gradient = [Float](repeating: .nan, count: 8)
        let lossSum = zip(logProbabilities, batch.targets).reduce(0.0) { $0 + ($1.1 == -100 ? 0 : -Double($1.0)) }
        let output = logProbabilities.withUnsafeBufferPointer { lp in
            gradient.withUnsafeMutableBufferPointer { g in
                objective.evaluate(ObjectiveInput(batch: batch, tokenLogProbabilities: lp,
                                                  crossEntropy: CrossEntropy.Total(lossSum: lossSum, targetCount: batch.targetCount),
                                                  scale: scale), gradient: ObjectiveGradient(logProbabilities: g))
            }
        }
        return (output, gradient)
    }

    @Test func sequencesSplitRowsWherePositionsRestart() {
        #expect(batch.sequenceSpans == [0..<4, 4..<6, 6..<8])
        #expect(batch.targetCount == 7)
    }

    @Test func nextTokenIsTheMeanOverCountedTargets() {
        let objective = NextTokenObjective()
        #expect(objective.normalization(of: batch) == 7)
        let (output, gradient) = run(objective, scale: 1.0 / 7)
        #expect(output.lossSum == 13.5)
        #expect(gradient == [-1, -1, -1, 0, -1, -1, -1, -1].map { $0 * Float(1.0 / 7) })
    }

    @Test func maskedTokensWeighEverySupervisedToken() {
        let objective = MaskedNextTokenObjective(normalization: .tokens)
        // Σ w over counted targets: 1 + 0 + 2 + (5 ignored) + 1 + 1 + 0.5 + 0.5.
        #expect(objective.normalization(of: batch) == 6)
        let (output, gradient) = run(objective, scale: 0.5)
        let expected: Double = 1 + 1 + 3 + 1 + 1 + 2  // Σ w · (−log p)
        #expect(output.lossSum == expected)
        #expect(gradient == [-0.5, 0, -1, 0, -0.5, -0.5, -0.25, -0.25])
        #expect(output.metrics["supervised_tokens"] == MetricSum(sum: 6, count: 3))
    }

    @Test func maskedSequencesAverageEachSequenceFirst() {
        let objective = MaskedNextTokenObjective(normalization: .sequences)
        #expect(objective.normalization(of: batch) == 3)
        let (output, gradient) = run(objective, scale: 0.25)
        // Sequence means: (1 + 1) / 3, (3 + 1) / 2, (1 + 2) / 1.
        let means: Double = 2.0 / 3 + 2 + 3
        #expect(abs(output.lossSum - means) < 1e-12)
        let expected: [Double] = [-1.0 / 3, 0, -2.0 / 3, 0, -0.5, -0.5, -0.5, -0.5].map { $0 * 0.25 }
        #expect(zip(gradient, expected).allSatisfy { abs(Double($0) - $1) < 1e-7 })
    }

    @Test func stepSumsReduceMetricsAsSumOverCount() {
        var sums = ObjectiveSums(MaskedNextTokenObjective())
        sums.add(ObjectiveOutput(lossSum: 2, metrics: ["supervised_tokens": MetricSum(sum: 6, count: 3)]))
        sums.add(ObjectiveOutput(lossSum: 1, metrics: ["supervised_tokens": MetricSum(sum: 2, count: 1)]))
        #expect(sums.values == [3, 8, 4])
        #expect(sums.means == ["supervised_tokens": 2])
    }
}

/// `train.freeze` patterns: `*` spans dots; every pattern must match, something must train.
@Suite struct FreezeConfigTests {
    func config(freeze: [String]) throws -> PretrainConfig {
        let yaml = """
            model: {vocab_size: 50, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2}
            train: {steps: 1, seq_len: 8, global_batch_size: 1, freeze: [\(freeze.map { "'\($0)'" }.joined(separator: ", "))]}
            optimizer: {lr: 0.1}
            data: {train: x}
            """
        return try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: "test.yaml")
    }

    @Test func patternsMatchAcrossDots() throws {
        #expect(TensorNamePattern("model.layers.*.mlp.*").matches("model.layers.12.mlp.up_proj.weight"))
        #expect(!TensorNamePattern("model.layers.*.mlp.*").matches("model.layers.12.self_attn.q_proj.weight"))
        #expect(TensorNamePattern("*norm*").matches("model.norm.weight"))
        #expect(TensorNamePattern("lm_head.weight").matches("lm_head.weight"))
        #expect(!TensorNamePattern("lm_head").matches("lm_head.weight"))
        let frozen = try config(freeze: ["model.layers.*", "model.embed_tokens.weight"]).frozenTensors()
        #expect(frozen.count == 19)
        #expect(!frozen.contains("lm_head.weight") && !frozen.contains("model.norm.weight"))
    }

    @Test func badPatternsAreRefusedNamingTheKey() throws {
        #expect(throws: ConfigError.self) { try config(freeze: ["model.layer.*"]) }
        do {
            _ = try config(freeze: ["model.layer.*"])
        } catch {
            #expect("\(error)".contains("train.freeze"))
            #expect("\(error)".contains("model.layer.*"))
            #expect("\(error)".contains("matches no tensor of the model"))
        }
        do {
            _ = try config(freeze: ["*"])
            Issue.record("freezing everything was accepted")
        } catch {
            #expect("\(error)".contains("freezes every tensor; leave some to train"))
        }
    }
}

/// The `lora:` section: PEFT's names and defaults, and its mistakes named by key.
@Suite struct LoRAConfigTests {
    func config(_ lora: String) throws -> PretrainConfig {
        let yaml = """
            model: {vocab_size: 50, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 2, num_attention_heads: 2}
            train: {steps: 1, seq_len: 8, global_batch_size: 1}
            optimizer: {lr: 0.1}
            data: {train: x}
            lora: \(lora)
            """
        return try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: "test.yaml")
    }

    @Test func peftNamesAndDefaults() throws {
        let lora = try #require(try config("{r: 4, target_modules: [q_proj, down_proj], modules_to_save: [lm_head]}").lora)
        #expect(lora.rank == 4 && lora.alpha == 16 && lora.targets == [.query, .down] && !lora.rankStabilized)
        #expect(lora.scaling == 4 && lora.savedTensorNames == ["lm_head.weight"])
        #expect(try #require(try config("{}").lora).targets == Projection.allCases)
        let plain = try #require(try config("{}").lora)
        #expect(!plain.weightDecomposed && plain.dropout == 0 && plain.loraPlusRatio == 1)
        let variants = try #require(try config("{use_dora: true, lora_dropout: 0.05, loraplus_lr_ratio: 16}").lora)
        #expect(variants.weightDecomposed && variants.dropout == 0.05 && variants.loraPlusRatio == 16)
        #expect(try #require(try config("{loraplus_lr_ratio: null}").lora).loraPlusRatio == 1)
    }

    /// adapter_config.json (PEFT's form) records DoRA and the dropout, which PEFT reads.
    @Test func adapterConfigRecordsDoRAAndDropout() throws {
        let lora = try #require(try config("{r: 4, use_dora: true, lora_dropout: 0.05, loraplus_lr_ratio: 16}").lora)
        let json = try #require(try JSONSerialization.jsonObject(with: CheckpointExtras.adapterConfig(lora)) as? [String: Any])
        #expect(json["use_dora"] as? Bool == true && json["lora_dropout"] as? Double == 0.05 && json["r"] as? Int == 4)
        let plain = try #require(try JSONSerialization.jsonObject(with: CheckpointExtras.adapterConfig(LoRAConfig(rank: 2, alpha: 4))) as? [String: Any])
        #expect(plain["use_dora"] as? Bool == false && plain["lora_dropout"] as? Double == 0)
    }

    @Test func mistakesNameTheKey() throws {
        for (section, expected) in [("{r: 0}", "lora.r"), ("{lora_alpha: -1}", "lora.lora_alpha"),
                                    ("{modules_to_save: [norm]}", "lora.modules_to_save"), ("{target_modules: [qkv]}", "target_modules"),
                                    ("{lora_dropout: 1}", "lora.lora_dropout"), ("{lora_dropout: -0.1}", "lora.lora_dropout"),
                                    ("{loraplus_lr_ratio: 0}", "lora.loraplus_lr_ratio"), ("{use_dora: maybe}", "use_dora")] {
            #expect { _ = try config(section) } throws: { "\($0)".contains(expected) }
        }
    }
}
