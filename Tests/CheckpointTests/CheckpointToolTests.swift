import Checkpoint
import Foundation
import Model
import TensorComparison
import Testing
import Training

/// The checkpoint tools in process: reshard ownership, offline writes, Hugging Face config
/// and import/export round trips (without Python; tools/check-hf-roundtrip.py adds transformers).
@Suite struct CheckpointToolTests {
    /// vocab 263 does not divide 2, 3 or 4; GQA; untied.
    let model = LlamaConfig(vocabSize: 263, hiddenSize: 32, intermediateSize: 72, numHiddenLayers: 2, numAttentionHeads: 4,
                            numKeyValueHeads: 2, maxPositionEmbeddings: 128)

    func value(_ name: String, _ element: Int) -> Float {
        Float(abs(name.hashValue % 1000)) + Float(element) * 0.001
    }

    /// Every element of every tensor is owned by exactly one rank, for several meshes (ZeRO
    /// shards, tensor slices with column runs and replicated KV heads, pipeline stages).
    @Test func ownershipPartitionsEveryTensor() throws {
        let layout = ParameterLayout(config: model)
        let meshes = [1, 2, 3, 4, 7].map { CheckpointMesh(dataParallel: $0, zeroStage: 3) }
            + [CheckpointMesh(dataParallel: 1, tensorParallel: 2), CheckpointMesh(dataParallel: 2, tensorParallel: 2, pipelineParallel: 2),
               CheckpointMesh(dataParallel: 3, tensorParallel: 4, pipelineParallel: 2)]
        for mesh in meshes {
            try mesh.validate(model: model)
            var covered: [String: [Range<Int>]] = [:]
            for rank in 0..<mesh.worldSize {
                for (entry, elements) in mesh.ownedElements(model: model, sequenceLength: 16, rank: rank) {
                    covered[entry.name, default: []].append(elements)
                }
            }
            for entry in layout.entries {
                let ranges = (covered[entry.name] ?? []).sorted { $0.lowerBound < $1.lowerBound }
                var next = 0
                for range in ranges {
                    #expect(range.lowerBound == next, "\(mesh): \(entry.name) gap or overlap at \(next)")
                    next = range.upperBound
                }
                #expect(next == entry.count, "\(mesh): \(entry.name) covered to \(next) of \(entry.count)")
            }
        }
        #expect { try CheckpointMesh(dataParallel: 1, tensorParallel: 3).validate(model: model) } throws: {
            "\($0)".contains("tensor parallel degree tp 3 must divide num_attention_heads")
        }
        #expect { try CheckpointMesh(dataParallel: 2, pipelineParallel: 0).validate() } throws: { "\($0)".contains("--pp 0") }
    }

    /// A checkpoint written as dp 1, resharded to dp 3 and back to dp 2: same values, one file
    /// per rank, slices where the mesh puts them, extras and metadata carried over.
    @Test func reshardKeepsEveryValue() throws {
        let directory = try scratchDirectory("reshard")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let layout = ParameterLayout(config: model)
        var declared: [String: [Int]] = [:]
        for entry in layout.entries {
            declared[entry.name] = entry.shape
            declared["optimizer.exp_avg." + entry.name] = entry.shape
        }
        let metadata = Data(#"{"data_parallel_degree": 1, "zero_stage": 0, "next_step": 4}"#.utf8)
        try CheckpointWriter.writeOffline(directory: directory + "/a", step: 4, ranks: 1, declared: declared, metadata: metadata,
                                          extraFiles: [CheckpointExtras.modelConfigName: try HuggingFaceConfig.encode(model)]) { _ in
            declared.map { name, shape in
                let count = shape.reduce(1, *)
                return CheckpointSliceValues(name: name, shape: shape, elements: 0..<count, values: (0..<count).map { value(name, $0) })
            }
        }
        let source = try CheckpointReader.locate(directory + "/a")
        let three = try CheckpointReader(stepDirectory: try CheckpointReshard.reshard(
            source, to: CheckpointMesh(dataParallel: 3, zeroStage: 3), output: directory + "/b", model: try CheckpointReshard.modelConfig(of: source)))
        let two = try CheckpointReader(stepDirectory: try CheckpointReshard.reshard(
            three, to: CheckpointMesh(dataParallel: 2, zeroStage: 1), output: directory + "/c", model: model))
        #expect(three.index.worldSize == 3 && two.index.worldSize == 2)
        try three.verify()
        try two.verify()
        for (name, shape) in declared {
            let count = shape.reduce(1, *)
            expectSameBits(try two.read(name: name), (0..<count).map { value(name, $0) }, name)
        }
        // The dp-2 files hold exactly what rank r of a dp-2 mesh owns.
        let mesh = CheckpointMesh(dataParallel: 2)
        for rank in 0..<2 {
            for (entry, elements) in mesh.ownedElements(model: model, sequenceLength: 16, rank: rank) {
                let slices = try two.tensor(named: entry.name).slices.filter { $0.file == CheckpointFiles.shardName(rank: rank) }
                #expect(slices.map(\.elements) == [elements], "\(entry.name) rank \(rank)")
            }
        }
        let state = try #require(try JSONSerialization.jsonObject(with: two.metadata) as? [String: Any])
        #expect(state["data_parallel_degree"] as? Int == 2 && state["zero_stage"] as? Int == 1 && state["next_step"] as? Int == 4)
        #expect(two.file(named: CheckpointExtras.modelConfigName) != nil)
        #expect(try String(contentsOfFile: directory + "/c/latest", encoding: .utf8) == "step_00000004\n")
    }

    /// An HF directory written here (sharded, bf16, tied) → import-hf → export-hf in bf16 gives
    /// byte-identical tensors; a non-Llama config is refused naming the field.
    @Test func importExportRoundTrip() throws {
        let directory = try scratchDirectory("hf")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var tied = model
        tied.tieWordEmbeddings = true
        let layout = ParameterLayout(config: tied)
        let source = directory + "/source"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try HuggingFaceConfig.encode(tied).write(to: URL(fileURLWithPath: source + "/config.json"))
        let half = layout.entries.count / 2
        var weightMap: [String: String] = [:]
        for (number, entries) in [Array(layout.entries[..<half]), Array(layout.entries[half...])].enumerated() {
            let file = "model-0000\(number + 1)-of-00002.safetensors"
            try Safetensors.write(entries.map { entry in
                Safetensors.Output(name: entry.name, shape: entry.shape, dtype: .bf16) { (0..<entry.count).map { value(entry.name, $0) } }
            }, metadata: ["format": "pt"], to: source + "/" + file)
            for entry in entries { weightMap[entry.name] = file }
        }
        try JSONSerialization.data(withJSONObject: ["weight_map": weightMap]).write(to: URL(fileURLWithPath: source + "/model.safetensors.index.json"))
        let report = try HuggingFaceImport.importDirectory(source, output: directory + "/imported")
        #expect(report.dtypes == ["BF16"] && report.tensors == layout.entries.count && report.model.tieWordEmbeddings)
        let reader = try CheckpointReader.locate(directory + "/imported")
        try reader.verify()
        #expect(!reader.tensorNames.contains("lm_head.weight"))
        let exported = try HuggingFaceExport.export(reader, to: directory + "/exported", dtype: .bf16, maxShardBytes: 10_000)
        #expect(exported.files.contains("model.safetensors.index.json"))
        var original: [String: Data] = [:], roundTrip: [String: Data] = [:]
        for (files, into) in [(source, 0), (directory + "/exported", 1)] {
            for name in try FileManager.default.contentsOfDirectory(atPath: files) where name.hasSuffix(".safetensors") {
                let file = try SafetensorsFile(path: files + "/" + name)
                for entry in file.entries {
                    if into == 0 { original[entry.name] = try file.bytes(of: entry.name) } else { roundTrip[entry.name] = try file.bytes(of: entry.name) }
                }
            }
        }
        #expect(original.count == layout.entries.count)
        #expect(original == roundTrip)
        // Refusals name the field.
        var other = try #require(try JSONSerialization.jsonObject(with: try HuggingFaceConfig.encode(tied)) as? [String: Any])
        other["architectures"] = ["MistralForCausalLM"]
        #expect { _ = try HuggingFaceConfig.decode(try JSONSerialization.data(withJSONObject: other), file: "x/config.json") } throws: {
            "\($0)".contains("\"architectures\"") && "\($0)".contains("x/config.json")
        }
        other["architectures"] = ["LlamaForCausalLM"]
        other["mlp_bias"] = true
        #expect { _ = try HuggingFaceConfig.decode(try JSONSerialization.data(withJSONObject: other), file: "x/config.json") } throws: {
            "\($0)".contains("mlp_bias")
        }
        other["mlp_bias"] = nil
        func refusal(_ changes: [String: Any]) throws -> String {
            var config = other
            for (key, value) in changes { config[key] = value }
            do {
                _ = try HuggingFaceConfig.decode(try JSONSerialization.data(withJSONObject: config), file: "x/config.json")
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(try refusal(["model_type": "mistral"]).contains("\"model_type\" is \"mistral\"; MeshLM runs llama, qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe models"))
        #expect(try refusal(["attention_bias": true]).contains("\"attention_bias\" is true; a llama model would then bias o_proj too"))
        #expect(try refusal(["model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "attention_bias": true]).contains("a qwen3 model would then bias o_proj too"))
        #expect(try refusal(["model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "use_sliding_window": true]).contains("\"use_sliding_window\" is true"))
        #expect(try refusal(["model_type": "qwen2", "architectures": ["LlamaForCausalLM"]]).contains("MeshLM runs a qwen2 model as Qwen2ForCausalLM or Qwen2ForSequenceClassification"))
        // Qwen2's biases are on whatever attention_bias says (transformers ignores the key);
        // a sequence classifier's labels come from id2label when num_labels is absent.
        let qwen2 = try HuggingFaceConfig.decode(try JSONSerialization.data(withJSONObject: other.merging(
            ["model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "attention_bias": false]) { $1 }), file: "x/config.json")
        #expect(qwen2.modelType == .qwen2 && qwen2.attentionBias && !qwen2.hasScoreHead)
        let classifier = try HuggingFaceConfig.decode(try JSONSerialization.data(withJSONObject: other.merging(
            ["architectures": ["LlamaForSequenceClassification"], "id2label": ["0": "bad", "1": "ok", "2": "good"]]) { $1 }),
                                                      file: "x/config.json")
        #expect(classifier.numLabels == 3 && classifier.hasScoreHead)
        // MeshLM's own model config refuses what it cannot run, naming the key.
        var config = LlamaConfig(vocabSize: 10, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2)
        config.modelType = .qwen2
        config.attentionBias = false
        #expect { try config.validate() } throws: { "\($0)".contains("attention_bias") && "\($0)".contains("qwen2") }
    }

    /// The byte tokenizer's HF vocabulary maps byte b to id b through GPT-2's byte characters.
    @Test func byteTokenizerVocabulary() throws {
        let json = try #require(try JSONSerialization.jsonObject(with: try HuggingFaceTokenizer.byteTokenizerJSON()) as? [String: Any])
        let model = try #require(json["model"] as? [String: Any])
        let vocabulary = try #require(model["vocab"] as? [String: Int])
        #expect(vocabulary.count == 256 && Set(vocabulary.values) == Set(0..<256))
        #expect(vocabulary["A"] == 65 && vocabulary["Ġ"] == 32 && vocabulary["Ċ"] == 10 && vocabulary["Ā"] == 0)
        let added = try #require(json["added_tokens"] as? [[String: Any]])
        #expect(added.map { $0["id"] as? Int } == [256, 257, 258])
    }
}
