import Checkpoint
import Foundation
import Runtime
import Model

/// `meshlm ckpt export-hf` and `consolidate`: a checkpoint as single files.
public enum HuggingFaceExport {
    /// What `export` wrote.
    public struct Report: Sendable {
        public var files: [String]
        public var tensors: Int
        public var bytes: Int
        public var warnings: [String]
    }

    /// Writes a transformers-loadable Llama directory: `model.safetensors` (or, above
    /// `maxShardBytes`, `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`),
    /// `config.json`, `generation_config.json`, and the tokenizer: the checkpoint's own
    /// `tokenizer.json` when it has one, the byte tokenizer's HF definition when it was
    /// trained on `bytes`, nothing (with a warning) otherwise.
    ///
    /// A LoRA checkpoint's adapters go to `output/adapter` in PEFT's layout (`PeftAdapter`),
    /// beside the base (whose `modules_to_save` tensors are the trained ones); with
    /// `adapterOnly`, `output` receives the adapter alone.
    public static func export(_ reader: CheckpointReader, to output: String, dtype: SafetensorsDType = .f32,
                              maxShardBytes: Int = 5_000_000_000, modelConfigOverride: String? = nil,
                              adapterOnly: Bool = false) throws -> Report {
        let model = try CheckpointReshard.modelConfig(of: reader, override: modelConfigOverride)
        let lora = try PeftAdapter.lora(of: reader)
        if adapterOnly {
            guard let lora else {
                throw CheckpointError(.missingFile, "\(reader.stepDirectory) has no \(CheckpointExtras.adapterConfigName): it is not a LoRA checkpoint, so it has no adapter to export alone")
            }
            let files = try PeftAdapter.export(reader, lora: lora, model: model, to: output, dtype: dtype)
            let tensors = PeftAdapter.tensors(PeftAdapter.exported(lora, model: model), model: model)
            return Report(files: files, tensors: tensors.count, bytes: tensors.reduce(0) { $0 + $1.count * dtype.byteCount }, warnings: [])
        }
        let layout = ParameterLayout(config: model)
        // A QLoRA run's quantized tensors are exported as its base's original W (users load the
        // base and quantize it themselves, as bitsandbytes does).
        let tensors = try CheckpointTensors(reader)
        for entry in layout.entries {
            let shape = try tensors.shape(of: entry.name)
            guard shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(entry.name) has shape \(shape); model_config.json gives \(entry.shape)")
            }
        }
        do { try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true) } catch {
            throw CheckpointError(.io, "cannot create \(output): \(FileProblem.reason(error, path: output)); choose another --output")
        }
        // Shards: tensors in layout order, a new shard when the next tensor would pass the limit.
        var shards: [[ParameterLayout.Entry]] = [[]]
        var shardBytes = 0
        for entry in layout.entries {
            let bytes = entry.count * dtype.byteCount
            if shardBytes > 0 && shardBytes + bytes > maxShardBytes {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(entry)
            shardBytes += bytes
        }
        var files: [String] = []
        var weightMap: [String: String] = [:]
        for (number, entries) in shards.enumerated() {
            let name = shards.count == 1 ? "model.safetensors"
                : String(format: "model-%05d-of-%05d.safetensors", number + 1, shards.count)
            let outputs = entries.map { entry in
                Safetensors.Output(name: entry.name, shape: entry.shape, dtype: dtype) { try tensors.read(entry.name, base: QLoRAMergeBase.original.base) }
            }
            try Safetensors.write(outputs, metadata: ["format": "pt"], to: output + "/" + name)
            for entry in entries { weightMap[entry.name] = name }
            files.append(name)
        }
        let totalBytes = layout.entries.reduce(0) { $0 + $1.count * dtype.byteCount }
        if shards.count > 1 {
            let index: [String: Any] = ["metadata": ["total_size": totalBytes], "weight_map": weightMap]
            try write(try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]),
                      output + "/model.safetensors.index.json")
            files.append("model.safetensors.index.json")
        }
        let torchDtype = dtype == .f32 ? "float32" : dtype == .bf16 ? "bfloat16" : "float16"
        try write(try HuggingFaceConfig.encode(model, torchDtype: torchDtype), output + "/config.json")
        files.append("config.json")
        var generation: [String: Any] = ["_from_model_config": true]
        if let bos = model.bosTokenId { generation["bos_token_id"] = bos }
        if let eos = model.eosTokenId { generation["eos_token_id"] = eos }
        try write(try JSONSerialization.data(withJSONObject: generation, options: [.prettyPrinted, .sortedKeys]), output + "/generation_config.json")
        files.append("generation_config.json")

        var warnings: [String] = []
        let identity = reader.file(named: CheckpointExtras.tokenizerIdentityName)
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        if let tokenizer = reader.file(named: CheckpointExtras.tokenizerName) {
            try write(tokenizer, output + "/tokenizer.json")
            files.append("tokenizer.json")
            if let config = reader.file(named: "tokenizer_config.json") {
                try write(config, output + "/tokenizer_config.json")
                files.append("tokenizer_config.json")
            }
        } else if (identity?["name"] as? String) == "bytes" {
            try write(try HuggingFaceTokenizer.byteTokenizerJSON(), output + "/tokenizer.json")
            try write(try HuggingFaceTokenizer.byteTokenizerConfigJSON(maxLength: model.maxPositionEmbeddings), output + "/tokenizer_config.json")
            files += ["tokenizer.json", "tokenizer_config.json"]
        } else {
            warnings.append("\(reader.stepDirectory) records no tokenizer (no tokenizer.json, and \(CheckpointExtras.tokenizerIdentityName) does not name the byte tokenizer): the export has none")
        }
        var tensorCount = layout.entries.count, byteCount = totalBytes
        if let lora {
            files += try PeftAdapter.export(reader, lora: lora, model: model, to: output + "/adapter", dtype: dtype).map { "adapter/" + $0 }
            let tensors = PeftAdapter.tensors(PeftAdapter.exported(lora, model: model), model: model)
            tensorCount += tensors.count
            byteCount += tensors.reduce(0) { $0 + $1.count * dtype.byteCount }
        }
        return Report(files: files, tensors: tensorCount, bytes: byteCount, warnings: warnings)
    }

    /// Writes every tensor of the checkpoint (parameters, and AdamW moments when
    /// `includeOptimizer`) into one safetensors file, f32, under the checkpoint's names;
    /// `__metadata__` carries the step and the trainer's metadata.json.
    @discardableResult
    public static func consolidate(_ reader: CheckpointReader, to file: String, includeOptimizer: Bool) throws -> Int {
        let names = reader.tensorNames.filter { includeOptimizer || !$0.hasPrefix("optimizer.") }
        let outputs = try names.map { name in
            Safetensors.Output(name: name, shape: try reader.shape(of: name), dtype: .f32) { try reader.read(name: name) }
        }
        let metadata = ["format": "pt", "meshlm_step": String(reader.step),
                        "meshlm_metadata": String(decoding: reader.metadata, as: UTF8.self)]
        try Safetensors.write(outputs, metadata: metadata, to: file)
        return names.count
    }

    static func write(_ data: Data, _ path: String) throws {
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw CheckpointError(.io, "cannot write \(path): \(FileProblem.reason(error, path: path)); choose another --output")
        }
    }
}
