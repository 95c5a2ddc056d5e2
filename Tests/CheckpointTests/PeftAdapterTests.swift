import Checkpoint
import Foundation
import Model
import Runtime
import TensorComparison
import Testing
import Training

/// PEFT adapters in and out, without Python: the committed PEFT-saved adapter
/// (Tests/ModelTests/Fixtures/hf-llama-lora, tools/golden/make_lora_fixture.py) imported onto its
/// base gives PEFT's logits (`lora_golden.h5`); export → import is bit for bit; merge-lora
/// matches the unmerged adapters within f32 rounding; adapter directories MeshLM cannot
/// represent are refused naming the key.
@Suite struct PeftAdapterTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelTests/Fixtures").path
    static let base = fixtures + "/hf-llama-lora/base"
    static let adapter = fixtures + "/hf-llama-lora/adapter"

    /// The golden file's first row (positions 0…12) and PEFT's logits for it [13, 67].
    func goldenRow() throws -> (tokens: [Int32], logits: [Float]) {
        let golden = try HDF5File.open(Self.fixtures + "/lora_golden.h5")
        let tokens = Array(try golden.read(Int32.self, dataset: "lora/input_ids").prefix(13))
        #expect(Array(try golden.read(Int32.self, dataset: "lora/position_ids").prefix(13)) == (0..<13).map { Int32($0) })
        let vocabulary = try golden.shape(of: "lora/logits")[2]
        return (tokens, Array(try golden.read(Float.self, dataset: "lora/logits").prefix(13 * vocabulary)))
    }

    /// import-hf --adapter of PEFT's files: the checkpoint holds the base, the 28 adapter
    /// tensors and MeshLM's adapter_config.json, and runs (unmerged) to PEFT's logits.
    @Test func importedPEFTAdapterGivesPEFTLogits() throws {
        let work = try scratchDirectory("peft-import")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let report = try HuggingFaceImport.importDirectory(Self.base, output: work + "/imported", adapter: Self.adapter)
        let lora = try #require(report.lora)
        #expect(lora.rank == 4 && lora.alpha == 8 && lora.scaling == 2 && lora.targets == Projection.allCases && !lora.rankStabilized)
        #expect(report.tensors == 21 + 28 && report.warnings.isEmpty)
        let reader = try CheckpointReader.locate(work + "/imported")
        try reader.verify()
        #expect(try PeftAdapter.lora(of: reader) == lora)
        let evaluation = try CheckpointEvaluation(reader)
        #expect(evaluation.lora == lora)
        let (tokens, expected) = try goldenRow()
        expectClose(try evaluation.evaluate(tokens).logits, expected, relativeTolerance: 1e-5, "imported PEFT adapter vs PEFT logits")
    }

    /// import → export-hf → import: the exported adapter has PEFT's keys and exactly the
    /// fixture's values, the base every tensor of the fixture's; re-importing gives the same
    /// checkpoint bit for bit. --adapter-only writes the same two files alone.
    @Test func exportImportRoundTripIsBitForBit() throws {
        let work = try scratchDirectory("peft-roundtrip")
        defer { try? FileManager.default.removeItem(atPath: work) }
        try HuggingFaceImport.importDirectory(Self.base, output: work + "/first", adapter: Self.adapter)
        let first = try CheckpointReader.locate(work + "/first")
        let report = try HuggingFaceExport.export(first, to: work + "/exported")
        #expect(report.files.contains("adapter/adapter_model.safetensors") && report.files.contains("adapter/adapter_config.json"))
        let original = try SafetensorsFile(path: Self.adapter + "/adapter_model.safetensors")
        let exported = try SafetensorsFile(path: work + "/exported/adapter/adapter_model.safetensors")
        #expect(exported.entries.map(\.name).sorted() == original.entries.map(\.name).sorted())
        for entry in original.entries {
            #expect(try exported.entry(named: entry.name).shape == entry.shape)
            expectSameBits(try exported.floats(of: entry.name), try original.floats(of: entry.name), entry.name)
        }
        let baseFile = try SafetensorsFile(path: Self.base + "/model.safetensors")
        let exportedBase = try SafetensorsFile(path: work + "/exported/model.safetensors")
        #expect(exportedBase.entries.map(\.name).sorted() == baseFile.entries.map(\.name).sorted())
        for entry in baseFile.entries { expectSameBits(try exportedBase.floats(of: entry.name), try baseFile.floats(of: entry.name), entry.name) }
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: work + "/exported/adapter/adapter_config.json"))) as? [String: Any])
        #expect(config["peft_type"] as? String == "LORA" && config["r"] as? Int == 4 && config["bias"] as? String == "none")

        try HuggingFaceImport.importDirectory(work + "/exported", output: work + "/second", adapter: work + "/exported/adapter")
        let second = try CheckpointReader.locate(work + "/second")
        #expect(second.tensorNames.sorted() == first.tensorNames.sorted())
        for name in first.tensorNames { expectSameBits(try second.read(name: name), try first.read(name: name), name) }
        #expect(second.file(named: PeftAdapter.configName) == first.file(named: PeftAdapter.configName))

        let only = try HuggingFaceExport.export(first, to: work + "/only", adapterOnly: true)
        #expect(Set(only.files) == [PeftAdapter.configName, PeftAdapter.weightsName] && only.tensors == 28)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: work + "/only")) == [PeftAdapter.configName, PeftAdapter.weightsName])
        let onlyFile = try SafetensorsFile(path: work + "/only/adapter_model.safetensors")
        for entry in original.entries { expectSameBits(try onlyFile.floats(of: entry.name), try original.floats(of: entry.name), entry.name) }
        try HuggingFaceImport.importDirectory(Self.base, output: work + "/plain")
        #expect { try HuggingFaceExport.export(try CheckpointReader.locate(work + "/plain"), to: work + "/y", adapterOnly: true) } throws: {
            "\($0)".contains("it is not a LoRA checkpoint, so it has no adapter to export alone")
        }
    }

    /// merge-lora: a plain checkpoint (no adapters, no adapter_config.json) whose logits equal
    /// the unmerged adapters' within f32 rounding (relative 1e-5 of the largest logit; measured
    /// below), and W + 2·B·A exactly where the adapters were.
    @Test func mergedCheckpointMatchesUnmergedAdapters() throws {
        let work = try scratchDirectory("peft-merge")
        defer { try? FileManager.default.removeItem(atPath: work) }
        try HuggingFaceImport.importDirectory(Self.base, output: work + "/imported", adapter: Self.adapter)
        let adapted = try CheckpointReader.locate(work + "/imported")
        let report = try LoRAMerge.merge(adapted, output: work + "/merged")
        #expect(report.merged == 14 && report.tensors == 21)
        let merged = try CheckpointReader.locate(work + "/merged")
        try merged.verify()
        #expect(!merged.tensorNames.contains { $0.contains("lora_") } && merged.tensorNames.count == 21)
        #expect(merged.file(named: PeftAdapter.configName) == nil && merged.step == adapted.step)
        #expect(try PeftAdapter.lora(of: merged) == nil)
        // One merged weight by hand: W + scaling · B·A, summed in Double.
        let name = "model.layers.1.mlp.down_proj"
        let (w, a, b) = (try adapted.read(name: name + ".weight"), try adapted.read(name: name + ".lora_A.weight"), try adapted.read(name: name + ".lora_B.weight"))
        let (output, input, rank) = (40, 72, 4)
        let expected = (0..<output * input).map { index in
            Double(w[index]) + 2 * (0..<rank).reduce(0.0) { $0 + Double(b[index / input * rank + $1]) * Double(a[$1 * input + index % input]) }
        }
        expectClose(try merged.read(name: name + ".weight"), expected, relativeTolerance: 1e-6, "merged \(name)")
        expectSameBits(try merged.read(name: "model.norm.weight"), try adapted.read(name: "model.norm.weight"), "untouched norm")

        let (tokens, golden) = try goldenRow()
        let unmergedLogits = try CheckpointEvaluation(adapted).evaluate(tokens)
        let mergedEvaluation = try CheckpointEvaluation(merged)
        #expect(mergedEvaluation.lora == nil)
        let mergedLogits = try mergedEvaluation.evaluate(tokens)
        expectClose(mergedLogits.logits, unmergedLogits.logits, relativeTolerance: 1e-5, "merged vs unmerged logits")
        expectClose(mergedLogits.logits, golden, relativeTolerance: 1e-5, "merged vs PEFT logits")
        print("merge-lora: loss \(mergedLogits.loss) merged vs \(unmergedLogits.loss) unmerged")
        #expect(abs(mergedLogits.loss - unmergedLogits.loss) <= 1e-5 * unmergedLogits.loss)

        try HuggingFaceImport.importDirectory(Self.base, output: work + "/plain")
        #expect { try LoRAMerge.merge(try CheckpointReader.locate(work + "/plain"), output: work + "/z") } throws: {
            "\($0)".contains("holds no LoRA adapters to merge (it is a plain checkpoint already)")
        }
    }

    /// `sft --init-from` a checkpoint with adapters: no lora: section takes the checkpoint's;
    /// a matching one is kept (with its own modules_to_save); a different r, alpha, targets or
    /// scaling is refused naming the key.
    @Test func continuingAdaptersNeedsTheirSettings() throws {
        let work = try scratchDirectory("peft-continue")
        defer { try? FileManager.default.removeItem(atPath: work) }
        try HuggingFaceImport.importDirectory(Self.base, output: work + "/imported", adapter: Self.adapter)
        let reader = try CheckpointReader.locate(work + "/imported")
        let saved = try #require(try PeftAdapter.lora(of: reader))
        #expect(try PeftAdapter.continuing(nil, from: reader) == saved)
        var same = LoRAConfig(rank: 4, alpha: 8, targets: [.down, .up, .gate, .output, .value, .key, .query])
        same.modulesToSave = ["lm_head"]
        #expect(try PeftAdapter.continuing(same, from: reader) == same)
        for (changed, key) in [(LoRAConfig(rank: 8, alpha: 8), "lora.r is 8 but the adapters of"),
                               (LoRAConfig(rank: 4, alpha: 16), "lora.lora_alpha is 16.0 but"),
                               (LoRAConfig(rank: 4, alpha: 8, targets: [.query, .value]), "lora.target_modules is [\"q_proj\", \"v_proj\"] but"),
                               (LoRAConfig(rank: 4, alpha: 8, rankStabilized: true), "lora.use_rslora is true but")] {
            #expect { try PeftAdapter.continuing(changed, from: reader) } throws: { "\($0)".contains(key) }
        }
        try HuggingFaceImport.importDirectory(Self.base, output: work + "/plain")
        #expect(try PeftAdapter.continuing(nil, from: try CheckpointReader.locate(work + "/plain")) == nil)
    }

    /// A sequence-classification base (the score fixture: the same projections, a scalar head)
    /// with the fixture's adapter: export declares PEFT's SEQ_CLS task and saves `score` as PEFT
    /// does; PEFT's own SEQ_CLS form (modules_to_save [classifier, score], the head in the
    /// file) imports with the adapter's head replacing the base's.
    @Test func scoreHeadAdapterExportsAsPEFTSequenceClassification() throws {
        let work = try scratchDirectory("peft-score")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let scoreBase = Self.fixtures + "/hf-llama-score"
        try HuggingFaceImport.importDirectory(scoreBase, output: work + "/imported", adapter: Self.adapter)
        let imported = try CheckpointReader.locate(work + "/imported")
        _ = try HuggingFaceExport.export(imported, to: work + "/exported", adapterOnly: true)
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: work + "/exported/adapter_config.json"))) as? [String: Any])
        #expect(config["task_type"] as? String == "SEQ_CLS" && config["modules_to_save"] as? [String] == ["score"])
        let file = try SafetensorsFile(path: work + "/exported/adapter_model.safetensors")
        #expect(file.entries.count == 29)
        expectSameBits(try file.floats(of: "base_model.model.score.weight"), try imported.read(name: "score.weight"), "exported score")

        // PEFT's SEQ_CLS adapter: its trained head (here the base's doubled) replaces the base's.
        let peftStyle = try adapterCopy(work, "seq-cls", edit: { $0["task_type"] = "SEQ_CLS"; $0["modules_to_save"] = ["classifier", "score"] })
        let source = try SafetensorsFile(path: Self.adapter + "/adapter_model.safetensors")
        let trainedHead = try imported.read(name: "score.weight").map { 2 * $0 }
        try Safetensors.write(source.entries.map { entry in
            Safetensors.Output(name: entry.name, shape: entry.shape, dtype: .f32) { try source.floats(of: entry.name) }
        } + [Safetensors.Output(name: "base_model.model.score.weight", shape: try imported.shape(of: "score.weight"), dtype: .f32) { trainedHead }],
                              metadata: [:], to: peftStyle + "/adapter_model.safetensors")
        let report = try HuggingFaceImport.importDirectory(scoreBase, output: work + "/peft-style", adapter: peftStyle)
        #expect(report.lora?.modulesToSave == ["score"])
        let withHead = try CheckpointReader.locate(work + "/peft-style")
        expectSameBits(try withHead.read(name: "score.weight"), trainedHead, "the adapter's score head")
        expectSameBits(try withHead.read(name: "model.layers.0.self_attn.q_proj.lora_A.weight"),
                       try imported.read(name: "model.layers.0.self_attn.q_proj.lora_A.weight"), "adapter")
    }

    /// A copy of the fixture's adapter with `edit` applied to its adapter_config.json.
    func adapterCopy(_ work: String, _ label: String, edit: (inout [String: Any]) -> Void) throws -> String {
        let directory = work + "/" + label
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.adapter + "/adapter_config.json"))) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: directory + "/adapter_config.json"))
        try FileManager.default.copyItem(atPath: Self.adapter + "/adapter_model.safetensors", toPath: directory + "/adapter_model.safetensors")
        return directory
    }

    /// Every adapter MeshLM cannot represent, each refused with the file, the key and why.
    @Test func unrepresentableAdaptersAreRefused() throws {
        let work = try scratchDirectory("peft-bad")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let configEdits: [(String, (inout [String: Any]) -> Void, String)] = [
            ("dora", { $0["use_dora"] = true }, "has no tensor base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector, which"),
            ("dropout-range", { $0["lora_dropout"] = 1.5 }, "\"lora_dropout\" is 1.5; it must be a probability in [0, 1)"),
            ("bias", { $0["bias"] = "lora_only" }, "\"bias\" is \"lora_only\"; MeshLM's adapters train no biases (\"none\")"),
            ("layers", { $0["layers_to_transform"] = [0] }, "\"layers_to_transform\" is [0]; MeshLM adapts every layer"),
            ("rank-pattern", { $0["rank_pattern"] = ["q_proj": 8] }, "\"rank_pattern\" is {\"q_proj\":8}; MeshLM's adapters share one r"),
            ("alpha-pattern", { $0["alpha_pattern"] = ["down_proj": 4] }, "\"alpha_pattern\" is {\"down_proj\":4}; MeshLM's adapters share one lora_alpha"),
            ("loha", { $0["peft_type"] = "LOHA" }, "\"peft_type\" is \"LOHA\"; MeshLM reads LoRA adapters (\"LORA\") only"),
            ("pissa", { $0["init_lora_weights"] = "pissa" }, "\"init_lora_weights\" is \"pissa\"; that initialization rewrites the base weights"),
            ("lora-bias", { $0["lora_bias"] = true }, "\"lora_bias\" is true; MeshLM's LoRA does not implement it"),
            ("unknown-module", { $0["target_modules"] = ["q_proj", "fc1"] }, "\"target_modules\" names \"fc1\"; MeshLM's LoRA adapts q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (or \"all-linear\")"),
            ("regex-head", { $0["target_modules"] = ".*(q_proj|lm_head)" }, "\"target_modules\" \".*(q_proj|lm_head)\" matches lm_head"),
            ("regex-layer", { $0["target_modules"] = "model\\.layers\\.0\\..*_proj" }, "adapts [] in layer 1 but [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"] in layer 0"),
            ("score-causal", { $0["modules_to_save"] = ["score"] }, "\"modules_to_save\" is [\"score\"]; the base is a causal LM, which has no score head"),
            ("save-module", { $0["modules_to_save"] = ["classifier"] }, "\"modules_to_save\" is [\"classifier\"]; MeshLM trains whole embed_tokens, lm_head, score only"),
            ("rank", { $0["r"] = 8 }, "has shape [4, 40]; the base model with r 8 implies [8, 40] (was the adapter trained on another base?)"),
            ("narrower", { $0["target_modules"] = ["q_proj", "v_proj"] }, "holds base_model.model.model.layers.0.mlp.down_proj.lora_A.weight: a tensor MeshLM's LoRA has no place for"),
        ]
        for (label, edit, message) in configEdits {
            let directory = try adapterCopy(work, label, edit: edit)
            do {
                try HuggingFaceImport.importDirectory(Self.base, output: work + "/out-" + label, adapter: directory)
                Issue.record("\(label): imported, expected \(message)")
            } catch {
                #expect("\(error)".contains(message), "\(label): \(error)")
                #expect("\(error)".contains(directory), "\(label) names the directory: \(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: work + "/out-" + label), "\(label) wrote no checkpoint")
        }
        // A tied base (the Qwen3 fixture) with embed_tokens saved: refused unless PEFT kept the
        // head tied to the trained copy (ensure_weight_tying); then the shapes decide (head_dim 12).
        let qwen3 = Self.fixtures + "/hf-qwen3"
        let untied = try adapterCopy(work, "tied-embed", edit: { $0["modules_to_save"] = ["embed_tokens"] })
        #expect { try HuggingFaceImport.importDirectory(qwen3, output: work + "/o-tied", adapter: untied) } throws: {
            "\($0)".contains("\"modules_to_save\" is [\"embed_tokens\"]; on a base with tied embeddings PEFT trains a copy of embed_tokens and keeps lm_head on the original unless ensure_weight_tying is true")
        }
        let tying = try adapterCopy(work, "tied-embed-ensured", edit: { $0["modules_to_save"] = ["embed_tokens"]; $0["ensure_weight_tying"] = true })
        #expect { try HuggingFaceImport.importDirectory(qwen3, output: work + "/o-tying", adapter: tying) } throws: {
            "\($0)".contains("has no tensor base_model.model.model.embed_tokens.weight")
        }
        // A regular expression that picks the same projections in every layer is taken.
        let regex = try adapterCopy(work, "regex-all", edit: { $0["target_modules"] = "model\\.layers\\.\\d+\\.(self_attn|mlp)\\.\\w+_proj" })
        #expect(try HuggingFaceImport.importDirectory(Self.base, output: work + "/out-regex", adapter: regex).lora?.targets == Projection.allCases)
        // Dropout is taken (it applies when the adapter trains further).
        let dropout = try adapterCopy(work, "dropout", edit: { $0["lora_dropout"] = 0.05 })
        let imported = try HuggingFaceImport.importDirectory(Self.base, output: work + "/out-dropout", adapter: dropout)
        #expect(imported.lora?.dropout == 0.05 && imported.warnings.isEmpty)

        // Missing files, a missing tensor, and a base the adapter does not fit.
        let empty = work + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect { try HuggingFaceImport.importDirectory(Self.base, output: work + "/o1", adapter: empty) } throws: {
            "\($0)".contains("\(empty)/adapter_config.json is missing: a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors")
        }
        let noWeights = try adapterCopy(work, "no-weights", edit: { _ in })
        try FileManager.default.removeItem(atPath: noWeights + "/adapter_model.safetensors")
        #expect { try HuggingFaceImport.importDirectory(Self.base, output: work + "/o2", adapter: noWeights) } throws: {
            "\($0)".contains("\(noWeights)/adapter_model.safetensors is missing")
        }
        let partial = try adapterCopy(work, "partial", edit: { _ in })
        let source = try SafetensorsFile(path: Self.adapter + "/adapter_model.safetensors")
        let dropped = "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"
        try Safetensors.write(source.entries.filter { $0.name != dropped }.map { entry in
            Safetensors.Output(name: entry.name, shape: entry.shape, dtype: .f32) { try source.floats(of: entry.name) }
        }, metadata: [:], to: partial + "/adapter_model.safetensors")
        #expect { try HuggingFaceImport.importDirectory(Self.base, output: work + "/o3", adapter: partial) } throws: {
            "\($0)".contains("\(partial)/adapter_model.safetensors has no tensor \(dropped), which \(partial)/adapter_config.json implies")
        }
        // A base with another hidden size (20: 2 heads of 10) than the adapter was trained on (40).
        let otherBase = work + "/other-base"
        try FileManager.default.createDirectory(atPath: otherBase, withIntermediateDirectories: true)
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.base + "/config.json"))) as? [String: Any])
        config["hidden_size"] = 20
        config["num_attention_heads"] = 2
        config["num_key_value_heads"] = 2
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: otherBase + "/config.json"))
        let model = try HuggingFaceConfig.decode(try Data(contentsOf: URL(fileURLWithPath: otherBase + "/config.json")), file: "config.json")
        try Safetensors.write(ParameterLayout(config: model).entries.map { entry in
            Safetensors.Output(name: entry.name, shape: entry.shape, dtype: .f32) { [Float](repeating: 0.01, count: entry.count) }
        }, metadata: [:], to: otherBase + "/model.safetensors")
        #expect { try HuggingFaceImport.importDirectory(otherBase, output: work + "/o4", adapter: Self.adapter) } throws: {
            "\($0)".contains("tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight has shape [4, 40]; the base model with r 4 implies [4, 20] (was the adapter trained on another base?)")
        }
    }
}
