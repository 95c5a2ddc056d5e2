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
        var locations: [String: TensorLocation] = [:]
        for entry in layout.entries {
            guard let location = try TensorLocation(entry, files: files, model: model, configPath: configPath) else {
                let hint = entry.name == "lm_head.weight" ? " (config.json says tie_word_embeddings false)" : ""
                throw CheckpointError(.unknownTensor, "\(directory): no safetensors file holds tensor \(entry.name)\(hint)")
            }
            locations[entry.name] = location
            dtypes.insert(try location.file.entry(named: location.name).dtype.rawValue)
        }
        let used = Set(locations.values.map(\.name))
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
        let fusedCache = FusedTensorCache()
        let stepDirectory = try CheckpointWriter.writeOffline(directory: output, step: 0, ranks: 1, declared: declared, metadata: metadata,
                                                              extraFiles: extras, compressionLevel: compressionLevel) { _ in
            try entries.map { entry in
                let values: [Float]
                if let adapter, fromAdapter.contains(entry.name) {
                    values = try adapter.values(of: entry.name)
                } else {
                    guard let location = locations[entry.name] else { preconditionFailure("checked above: \(entry.name) has a file") }
                    values = try location.values(cache: fusedCache)
                }
                return CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count, values: values)
            }
        }
        return Report(stepDirectory: stepDirectory, model: model, tensors: entries.count, dtypes: dtypes.sorted(), ignored: ignored,
                      lora: adapter?.lora, warnings: adapter?.warnings ?? [])
    }
}

/// Where a layout tensor's values are in an HF directory's safetensors files: under its own name,
/// or — a sparse layer's router and experts — in the layout transformers 5 holds in memory (a
/// state dict saved directly): the router as `model.layers.L.mlp.gate.weight` (Mixtral's too) and
/// the experts fused, `mlp.experts.gate_up_proj` [E, 2·I, C] (expert e's gate rows, then its up
/// rows) and `mlp.experts.down_proj` [E, C, I].
struct TensorLocation {
    let file: SafetensorsFile
    /// The stored tensor's name.
    let name: String
    /// The entry's elements within it (all of it unless fused).
    let elements: Range<Int>?

    /// Nil when no file holds the tensor in either layout; throws on a shape that does not fit.
    init?(_ entry: ParameterLayout.Entry, files: [String: SafetensorsFile], model: LlamaConfig, configPath: String) throws {
        func checked(_ name: String, _ shape: [Int]) throws -> SafetensorsFile? {
            guard let file = files[name] else { return nil }
            let saved = try file.entry(named: name)
            guard saved.shape == shape else {
                throw CheckpointError(.badIndex, "\(file.path): tensor \(name) has shape \(saved.shape); \(configPath) implies \(shape)")
            }
            return file
        }
        if let file = try checked(entry.name, entry.shape) {
            (self.file, name, elements) = (file, entry.name, nil)
            return
        }
        guard case .layer(let layer) = entry.block else { return nil }
        let prefix = "model.layers.\(layer).mlp."
        let (experts, width, hidden) = (model.numLocalExperts, model.moeIntermediateSize, model.hiddenSize)
        let fused: (name: String, shape: [Int], elements: Range<Int>)
        switch entry.role {
        case .router:
            guard let file = try checked(prefix + "gate.weight", entry.shape) else { return nil }
            (self.file, name, elements) = (file, prefix + "gate.weight", nil)
            return
        case .expertGate(let e), .expertUp(let e):
            let start = e * 2 * width * hidden + (entry.role == .expertUp(e) ? width * hidden : 0)
            fused = (prefix + "experts.gate_up_proj", [experts, 2 * width, hidden], start..<start + width * hidden)
        case .expertDown(let e):
            fused = (prefix + "experts.down_proj", [experts, hidden, width], e * hidden * width..<(e + 1) * hidden * width)
        default:
            return nil
        }
        guard let file = try checked(fused.name, fused.shape) else { return nil }
        (self.file, name, elements) = (file, fused.name, fused.elements)
    }

    func values(cache: FusedTensorCache) throws -> [Float] {
        guard let elements else { return try file.floats(of: name) }
        return Array(try cache.floats(of: name, in: file)[elements])
    }
}

/// The last fused expert tensor read (each is read once for all its experts' slices).
final class FusedTensorCache: @unchecked Sendable {
    private var name: String?
    private var values: [Float] = []

    func floats(of name: String, in file: SafetensorsFile) throws -> [Float] {
        if name != self.name {
            values = try file.floats(of: name)
            self.name = name
        }
        return values
    }
}
