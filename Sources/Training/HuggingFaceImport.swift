import Checkpoint
import DataPipeline
import Foundation
import Model

/// `meshlm ckpt import-hf`: a transformers Llama directory (config.json and one or several
/// safetensors files, f32/bf16/f16) as a MeshLM checkpoint of parameters, at step 0, that
/// `meshlm pretrain --init-from` starts from and the server loads. With a PEFT LoRA adapter
/// (`PeftAdapter`), the checkpoint holds the base, the adapters and their
/// `adapter_config.json`, as a MeshLM LoRA run saves them: `meshlm sft --init-from` trains the
/// adapter further, generate/serve/eval apply it.
public enum HuggingFaceImport {
    public struct Report: Sendable {
        public var stepDirectory: String
        public var model: LlamaConfig
        public var tensors: Int
        /// Source dtypes seen, e.g. ["BF16"].
        public var dtypes: [String]
        /// Tensors in the files that the model does not use (e.g. a tied lm_head copy).
        public var ignored: [String]
        /// The adapter's settings, when one was imported.
        public var lora: LoRAConfig?
        /// Adapter settings read but not acted on, one sentence each.
        public var warnings: [String] = []
    }

    /// The safetensors files of `directory` and which holds each tensor.
    static func tensorFiles(in directory: String) throws -> [String: SafetensorsFile] {
        let indexPath = directory + "/model.safetensors.index.json"
        var files: [String] = []
        if let data = FileManager.default.contents(atPath: indexPath) {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let map = object["weight_map"] as? [String: String] else {
                throw CheckpointError(.badIndex, "\(indexPath) has no \"weight_map\" object")
            }
            files = Array(Set(map.values)).sorted()
        } else if FileManager.default.fileExists(atPath: directory + "/model.safetensors") {
            files = ["model.safetensors"]
        } else {
            files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !files.isEmpty else {
            throw CheckpointError(.missingFile, "\(directory) holds no model.safetensors, model.safetensors.index.json or *.safetensors (PyTorch .bin weights are not read: save with safe_serialization=True)")
        }
        var byTensor: [String: SafetensorsFile] = [:]
        for name in files {
            let file = try SafetensorsFile(path: directory + "/" + name)
            for entry in file.entries {
                if byTensor[entry.name] != nil { throw CheckpointError(.badIndex, "\(directory): tensor \(entry.name) is in two files") }
                byTensor[entry.name] = file
            }
        }
        return byTensor
    }

    /// Imports the model in `directory` (and the PEFT adapter in `adapter`, if given) as the
    /// checkpoints directory `output`. An adapter's `modules_to_save` tensors (a trained
    /// `lm_head`, …) replace the base's.
    @discardableResult
    public static func importDirectory(_ directory: String, output: String, adapter adapterDirectory: String? = nil,
                                       compressionLevel: Int32 = 1) throws -> Report {
        let configPath = directory + "/config.json"
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw CheckpointError(.missingFile, "\(configPath) is missing: an HF model directory has config.json beside its safetensors")
        }
        let model = try HuggingFaceConfig.decode(configData, file: configPath)
        let adapter = try adapterDirectory.map { try PeftAdapter.open($0, model: model) }
        let layout = ParameterLayout(config: model)
        let files = try tensorFiles(in: directory)
        var dtypes: Set<String> = []
        for entry in layout.entries {
            guard let file = files[entry.name] else {
                let hint = entry.name == "lm_head.weight" ? " (config.json says tie_word_embeddings false)" : ""
                throw CheckpointError(.unknownTensor, "\(directory): no safetensors file holds tensor \(entry.name)\(hint)")
            }
            let saved = try file.entry(named: entry.name)
            guard saved.shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(file.path): tensor \(entry.name) has shape \(saved.shape); \(configPath) implies \(entry.shape)")
            }
            dtypes.insert(saved.dtype.rawValue)
        }
        let used = Set(layout.entries.map(\.name))
        let ignored = files.keys.filter { !used.contains($0) }.sorted()
        var extras: [String: Data] = [CheckpointExtras.modelConfigName: try HuggingFaceConfig.encode(model)]
        if let adapter {
            extras[CheckpointExtras.adapterConfigName] = try CheckpointExtras.adapterConfig(adapter.lora)
            dtypes.formUnion(adapter.dtypes)
        }
        for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "chat_template.jinja"] {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { continue }
            if name == "tokenizer.json", HuggingFaceTokenizer.isByteTokenizerJSON(data) {
                // A byte-tokenizer model MeshLM exported: the checkpoint names the byte tokenizer,
                // as the run that trained it did, so generate and serve use it again.
                extras[CheckpointExtras.tokenizerIdentityName] = try JSONEncoder().encode(ByteTokenizer().identity)
                continue
            }
            extras[name] = data
        }
        var source: [String: Any] = ["source": "import-hf", "from": directory, "dtypes": dtypes.sorted()]
        if let adapterDirectory { source["adapter"] = adapterDirectory }
        let metadata = try JSONSerialization.data(withJSONObject: source, options: [.prettyPrinted, .sortedKeys])
        // With an adapter, the checkpoint's layout is a LoRA run's: each layer's block, then its adapters.
        let entries = ParameterLayout(config: model, lora: adapter?.lora).entries
        let fromAdapter = Set(adapter.map { PeftAdapter.tensors($0.lora, model: model).map(\.name) } ?? [])
        let declared = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.shape) })
        let stepDirectory = try CheckpointWriter.writeOffline(directory: output, step: 0, ranks: 1, declared: declared, metadata: metadata,
                                                              extraFiles: extras, compressionLevel: compressionLevel) { _ in
            try entries.map { entry in
                let values: [Float]
                if let adapter, fromAdapter.contains(entry.name) {
                    values = try adapter.values(of: entry.name)
                } else {
                    guard let file = files[entry.name] else { preconditionFailure("checked above: \(entry.name) has a file") }
                    values = try file.floats(of: entry.name)
                }
                return CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count, values: values)
            }
        }
        return Report(stepDirectory: stepDirectory, model: model, tensors: entries.count, dtypes: dtypes.sorted(), ignored: ignored,
                      lora: adapter?.lora, warnings: adapter?.warnings ?? [])
    }
}
