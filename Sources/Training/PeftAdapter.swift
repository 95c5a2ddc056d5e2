import Checkpoint
import Foundation
import Runtime
import Model

/// A LoRA adapter in Hugging Face PEFT's layout, as `PeftModel.save_pretrained` writes it and
/// `PeftModel.from_pretrained` reads it: a directory with `adapter_config.json` (`LoraConfig`'s
/// fields) and `adapter_model.safetensors`, whose keys are the transformers names under
/// `base_model.model.`:
///
///     base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight   [r, in]
///     base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight   [out, r]
///     base_model.model.lm_head.weight                                  (modules_to_save: the whole trained tensor)
///
/// A MeshLM checkpoint names the same tensors without the prefix, so `meshlm ckpt export-hf`
/// writes an adapter and `meshlm ckpt import-hf --adapter` reads one by renaming alone
/// (docs/sft.md, "Adapters in and out").
public enum PeftAdapter {
    public static let configName = "adapter_config.json"
    public static let weightsName = "adapter_model.safetensors"
    /// What `PeftModelForCausalLM` puts before the transformers names.
    public static let keyPrefix = "base_model.model."

    /// The tensors an adapter of `lora` on `model` holds, in the layout's order, by MeshLM
    /// (= transformers) name: each layer's lora_A and lora_B per target, then the
    /// `modules_to_save` tensors the model has (a tied model has no `lm_head.weight`).
    public static func tensors(_ lora: LoRAConfig, model: LlamaConfig) -> [ParameterLayout.Entry] {
        ParameterLayout(config: model, lora: lora).entries.filter { $0.block.isAdapter || lora.savedTensorNames.contains($0.name) }
    }

    /// The LoRA settings of a MeshLM checkpoint (its `adapter_config.json`), nil for a plain
    /// checkpoint. Adapter tensors without the file are refused: their scaling is unknown.
    public static func lora(of reader: CheckpointReader) throws -> LoRAConfig? {
        let path = reader.stepDirectory + "/" + configName
        guard let data = reader.file(named: configName) else {
            if let adapter = reader.tensorNames.first(where: { $0.contains(".lora_A.") }) {
                throw CheckpointError(.missingFile, "\(reader.stepDirectory) holds LoRA adapters (\(adapter), …) but no \(configName) to say how to apply them")
            }
            return nil
        }
        do {
            let lora = try JSONDecoder().decode(LoRAConfig.self, from: data)
            try lora.validate()
            return lora
        } catch {
            throw CheckpointError(.badIndex, "\(path): \(Runtime.describe(error))")
        }
    }

    /// The adapters a run starting from `reader` trains: a checkpoint with adapters (a LoRA run's,
    /// or one `import-hf --adapter` made) continues them, so `configured` (the run's `lora:`
    /// section) must agree with its r, lora_alpha, target_modules and use_rslora; without a
    /// `lora:` section the checkpoint's settings are taken. `modules_to_save` is the run's choice.
    public static func continuing(_ configured: LoRAConfig?, from reader: CheckpointReader) throws -> LoRAConfig? {
        guard let saved = try lora(of: reader) else { return configured }
        guard let configured else { return saved }
        let differences = [
            ("r", "\(configured.rank)", "\(saved.rank)"),
            ("lora_alpha", "\(configured.alpha)", "\(saved.alpha)"),
            ("target_modules", "\(configured.targets.map(\.moduleName).sorted())", "\(saved.targets.map(\.moduleName).sorted())"),
            ("use_rslora", "\(configured.rankStabilized)", "\(saved.rankStabilized)"),
        ].filter { $0.1 != $0.2 }
        if let (key, run, checkpoint) = differences.first {
            throw CheckpointError(.badIndex, "lora.\(key) is \(run) but the adapters of \(reader.stepDirectory) have \(key) \(checkpoint) (its \(configName)): training them further needs the same r, lora_alpha, target_modules and use_rslora (or leave out the lora: section to take the checkpoint's)")
        }
        return configured
    }

    /// Checks that `reader` holds every adapter tensor of `lora` with the shape `model` implies.
    public static func checkTensors(of reader: CheckpointReader, lora: LoRAConfig, model: LlamaConfig) throws {
        for entry in tensors(lora, model: model) {
            guard reader.tensorNames.contains(entry.name) else {
                throw CheckpointError(.unknownTensor, "\(reader.stepDirectory) has no tensor \(entry.name), which its \(configName) (r \(lora.rank), target_modules \(lora.targets.map(\.moduleName))) implies")
            }
            let shape = try reader.shape(of: entry.name)
            guard shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(entry.name) has shape \(shape); model_config.json and \(configName) imply \(entry.shape)")
            }
        }
    }

    /// PEFT's name for a tied model's head when `embed_tokens` is saved with
    /// `ensure_weight_tying`: PEFT saves the trained embedding a second time under it.
    static let tiedHeadKey = keyPrefix + "lm_head.weight"

    /// Whether an adapter of `lora` on `model` carries `tiedHeadKey` (a tied model that trains
    /// its embedding).
    static func savesTiedHead(_ lora: LoRAConfig, model: LlamaConfig) -> Bool {
        model.tieWordEmbeddings && lora.modulesToSave.contains("embed_tokens")
    }

    /// The settings an exported adapter declares: `modules_to_save` lists only the modules whose
    /// tensor the model has, and a model with a scalar head always saves `score`, as PEFT's
    /// `SEQ_CLS` task does (it adds the head to `modules_to_save` itself and expects its tensor).
    public static func exported(_ lora: LoRAConfig, model: LlamaConfig) -> LoRAConfig {
        let layout = ParameterLayout(config: model)
        var saved = lora
        saved.modulesToSave = lora.modulesToSave.filter { module in LoRAConfig.savableModules[module].flatMap(layout.entry(named:)) != nil }
        if model.hasScoreHead && !saved.modulesToSave.contains("score") { saved.modulesToSave.append("score") }
        return saved
    }

    /// Writes the adapter of a MeshLM checkpoint into `directory` in PEFT's layout (`exported`'s
    /// settings, PEFT's task type); returns the files written.
    @discardableResult
    public static func export(_ reader: CheckpointReader, lora: LoRAConfig, model: LlamaConfig, to directory: String,
                              dtype: SafetensorsDType = .f32) throws -> [String] {
        try checkTensors(of: reader, lora: lora, model: model)
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw CheckpointError(.io, "cannot create \(directory): \(FileProblem.reason(error, path: directory)); choose another --output")
        }
        let saved = exported(lora, model: model)
        var outputs = tensors(saved, model: model).map { entry in
            Safetensors.Output(name: keyPrefix + entry.name, shape: entry.shape, dtype: dtype) { try reader.read(name: entry.name) }
        }
        // A tied model's trained embedding is its head too: PEFT keeps them tied when told
        // (ensure_weight_tying) and then expects the head's key as well.
        let tiedHead = savesTiedHead(saved, model: model)
        if tiedHead, let embedding = outputs.first(where: { $0.name == keyPrefix + "model.embed_tokens.weight" }) {
            outputs.append(Safetensors.Output(name: tiedHeadKey, shape: embedding.shape, dtype: dtype, values: embedding.values))
        }
        try Safetensors.write(outputs, metadata: ["format": "pt"], to: directory + "/" + weightsName)
        let config = try CheckpointExtras.adapterConfig(saved, taskType: model.hasScoreHead ? "SEQ_CLS" : "CAUSAL_LM",
                                                        ensureWeightTying: tiedHead)
        try HuggingFaceExport.write(config, directory + "/" + configName)
        return [configName, weightsName]
    }

    /// A PEFT adapter directory opened against the base model it adapts: its settings and its
    /// tensors, every one checked.
    public struct Source {
        public let directory: String
        public let lora: LoRAConfig
        /// Settings MeshLM reads but does not act on (e.g. `lora_dropout`), one sentence each.
        public let warnings: [String]
        let file: SafetensorsFile

        /// `name`'s values (a MeshLM name: the key without `base_model.model.`), as f32.
        public func values(of name: String) throws -> [Float] { try file.floats(of: keyPrefix + name) }

        /// The source dtypes of the adapter's tensors.
        public var dtypes: Set<String> { Set(file.entries.map(\.dtype.rawValue)) }
    }

    /// Opens the PEFT adapter in `directory` for `model` (the base's config), refusing what
    /// MeshLM's adapters cannot represent and an adapter that does not fit the base, each
    /// with the file, the key and the value.
    public static func open(_ directory: String, model: LlamaConfig) throws -> Source {
        let configPath = directory + "/" + configName
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw CheckpointError(.missingFile, "\(configPath) is missing: a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors (PeftModel.save_pretrained)")
        }
        let (lora, warnings) = try settings(data, file: configPath, model: model)
        let weightsPath = directory + "/" + weightsName
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            let hint = FileManager.default.fileExists(atPath: directory + "/adapter_model.bin") ? " (adapter_model.bin is not read: save with safe_serialization=True)" : ""
            throw CheckpointError(.missingFile, "\(weightsPath) is missing\(hint)")
        }
        let file = try SafetensorsFile(path: weightsPath)
        let expected = tensors(lora, model: model)
        for entry in expected {
            guard let saved = try? file.entry(named: keyPrefix + entry.name) else {
                throw CheckpointError(.unknownTensor, "\(weightsPath) has no tensor \(keyPrefix + entry.name), which \(configPath) implies")
            }
            guard saved.shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(weightsPath): tensor \(saved.name) has shape \(saved.shape); the base model with r \(lora.rank) implies \(entry.shape) (was the adapter trained on another base?)")
            }
        }
        var known = Set(expected.map { keyPrefix + $0.name })
        if savesTiedHead(lora, model: model), (try? file.entry(named: tiedHeadKey)) != nil {
            guard try file.floats(of: tiedHeadKey) == file.floats(of: keyPrefix + "model.embed_tokens.weight") else {
                throw CheckpointError(.badIndex, "\(weightsPath): \(tiedHeadKey) differs from the saved embed_tokens, but the base ties them (tie_word_embeddings) and MeshLM's tied model has one matrix for both")
            }
            known.insert(tiedHeadKey)
        }
        if let stray = file.entries.map(\.name).sorted().first(where: { !known.contains($0) }) {
            let reason = stray.contains("lora_magnitude_vector") ? "a DoRA magnitude vector, but adapter_config.json does not set use_dora"
                : stray.hasPrefix(keyPrefix) ? "a tensor MeshLM's LoRA has no place for" : "not under PEFT's \(keyPrefix) prefix"
            throw CheckpointError(.badIndex, "\(weightsPath) holds \(stray): \(reason)")
        }
        return Source(directory: directory, lora: lora, warnings: warnings, file: file)
    }

    /// The LoRA settings of a PEFT `adapter_config.json` (PEFT's defaults where a key is
    /// absent: r 8, lora_alpha 8). Every other setting must be PEFT's default or one that
    /// does not change what the adapter computes; anything else is refused by name.
    static func settings(_ data: Data, file: String, model: LlamaConfig) throws -> (LoRAConfig, [String]) {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badIndex, "\(file) is not a JSON object")
        }
        func refuse(_ key: String, _ why: String) -> CheckpointError {
            CheckpointError(.badIndex, "\(file): \"\(key)\" is \(describe(object[key] ?? NSNull())); \(why)")
        }
        if let type = object["peft_type"], (type as? String) != "LORA" {
            throw refuse("peft_type", "MeshLM reads LoRA adapters (\"LORA\") only")
        }
        guard let weightDecomposed = (object["use_dora"] ?? false) as? Bool else { throw refuse("use_dora", "it must be true or false") }
        if let bias = object["bias"], (bias as? String) != "none" { throw refuse("bias", "MeshLM's adapters train no biases (\"none\")") }
        if let initialization = object["init_lora_weights"], !(initialization is Bool) && (initialization as? String) != "gaussian" {
            throw refuse("init_lora_weights", "that initialization rewrites the base weights, so this adapter needs a base MeshLM was not given (use true, false or \"gaussian\")")
        }
        let understood: Set<String> = ["peft_type", "task_type", "r", "lora_alpha", "target_modules", "use_rslora", "modules_to_save",
                                       "lora_dropout", "bias", "use_dora", "init_lora_weights", "base_model_name_or_path", "revision",
                                       "inference_mode", "peft_version", "auto_mapping", "megatron_core", "qalora_group_size",
                                       "ensure_weight_tying"]
        let reasons = ["layers_to_transform": "MeshLM adapts every layer", "layers_pattern": "MeshLM adapts every layer",
                       "rank_pattern": "MeshLM's adapters share one r", "alpha_pattern": "MeshLM's adapters share one lora_alpha",
                       "fan_in_fan_out": "MeshLM's projections store [out, in]"]
        for key in object.keys.sorted() where !understood.contains(key) && !isUnset(object[key]) {
            throw refuse(key, reasons[key] ?? "MeshLM's LoRA does not implement it (it must be unset, false or empty)")
        }
        guard let rank = (object["r"] ?? 8) as? Int, rank >= 1 else { throw refuse("r", "it must be a positive integer") }
        guard let alpha = ((object["lora_alpha"] ?? 8) as? NSNumber)?.doubleValue, alpha > 0 else { throw refuse("lora_alpha", "it must be a positive number") }
        guard let rankStabilized = (object["use_rslora"] ?? false) as? Bool else { throw refuse("use_rslora", "it must be true or false") }
        let modules = object["modules_to_save"].flatMap { $0 is NSNull ? nil : $0 }
        guard let listed = (modules ?? [String]()) as? [String] else { throw refuse("modules_to_save", "it must be a list of module names") }
        // PEFT may list a module by its path too (ensure_weight_tying adds "model.embed_tokens").
        var modulesToSave: [String] = []
        for module in listed.map({ $0 == "model.embed_tokens" ? "embed_tokens" : $0 }) where !modulesToSave.contains(module) {
            modulesToSave.append(module)
        }
        // PEFT's SEQ_CLS task adds its classifier-head names itself ("classifier" and "score";
        // "pre_classifier" too since peft 0.22) and wraps those that exist: a Llama
        // sequence classifier has only "score".
        if model.hasScoreHead { modulesToSave.removeAll { $0 == "classifier" || $0 == "pre_classifier" } }
        if modulesToSave.contains("score") && !model.hasScoreHead {
            throw refuse("modules_to_save", "the base is a causal LM, which has no score head (a sequence-classification base has)")
        }
        for module in modulesToSave where LoRAConfig.savableModules[module] == nil {
            throw refuse("modules_to_save", "MeshLM trains whole \(LoRAConfig.savableModules.keys.sorted().joined(separator: ", ")) only (\"\(module)\" is none of them)")
        }
        if modulesToSave.contains("lm_head") && model.tieWordEmbeddings {
            throw refuse("modules_to_save", "the base ties lm_head to embed_tokens (tie_word_embeddings), so MeshLM has no separate lm_head to hold the trained one")
        }
        // Without ensure_weight_tying, PEFT trains a copy of a tied embed_tokens and leaves
        // lm_head on the original: two matrices where MeshLM's tied model has one.
        if modulesToSave.contains("embed_tokens") && model.tieWordEmbeddings && (object["ensure_weight_tying"] as? Bool) != true {
            throw refuse("modules_to_save", "on a base with tied embeddings PEFT trains a copy of embed_tokens and keeps lm_head on the original unless ensure_weight_tying is true, and MeshLM's tied model cannot hold the two apart")
        }
        let targets = try projections(object["target_modules"], file: file, model: model)
        guard let dropout = ((object["lora_dropout"] ?? 0) as? NSNumber)?.doubleValue, (0..<1).contains(dropout) else {
            throw refuse("lora_dropout", "it must be a probability in [0, 1)")
        }
        var lora = LoRAConfig(rank: rank, alpha: alpha, targets: targets, rankStabilized: rankStabilized,
                              weightDecomposed: weightDecomposed, dropout: dropout)
        lora.modulesToSave = modulesToSave
        return (lora, [])
    }

    /// The projections `target_modules` names: a list of module names (`q_proj` …, as PEFT
    /// matches them, by the last name of the module's path), `"all-linear"`, or a regular
    /// expression PEFT matches against the whole module path (`model.layers.0.self_attn.q_proj`),
    /// which must pick the same projections in every layer and nothing else.
    static func projections(_ value: Any?, file: String, model: LlamaConfig) throws -> [Projection] {
        let known = Projection.allCases.map(\.moduleName).joined(separator: ", ")
        if let list = value as? [String] {
            for module in list where LoRAConfig.projections(named: [module]) == nil && list != ["all-linear"] {
                throw CheckpointError(.badIndex, "\(file): \"target_modules\" names \"\(module)\"; MeshLM's LoRA adapts \(known) (or \"all-linear\")")
            }
            guard let targets = LoRAConfig.projections(named: list), !targets.isEmpty else {
                throw CheckpointError(.badIndex, "\(file): \"target_modules\" is empty")
            }
            return targets
        }
        guard let pattern = value as? String else {
            throw CheckpointError(.badIndex, "\(file): \"target_modules\" must be a list of module names or a string (a regular expression, or \"all-linear\"), not \(describe(value ?? NSNull()))")
        }
        if pattern == "all-linear" { return Projection.allCases }
        let expression: NSRegularExpression
        do { expression = try NSRegularExpression(pattern: "^(?:" + pattern + ")$") } catch {
            throw CheckpointError(.badIndex, "\(file): \"target_modules\" \"\(pattern)\" is not a regular expression MeshLM can read: \(error.localizedDescription)")
        }
        func matches(_ path: String) -> Bool {
            expression.firstMatch(in: path, range: NSRange(path.startIndex..., in: path)) != nil
        }
        for other in ["model.embed_tokens", "lm_head", "score"] where matches(other) {
            throw CheckpointError(.badIndex, "\(file): \"target_modules\" \"\(pattern)\" matches \(other); MeshLM's LoRA adapts \(known) only")
        }
        let perLayer = (0..<model.numHiddenLayers).map { layer in
            Projection.allCases.filter { matches("model.layers.\(layer).\($0.path)") }
        }
        guard let first = perLayer.first, !first.isEmpty else {
            throw CheckpointError(.badIndex, "\(file): \"target_modules\" \"\(pattern)\" matches no projection of layer 0 (model.layers.0.self_attn.q_proj …)")
        }
        if let layer = perLayer.firstIndex(where: { $0 != first }) {
            throw CheckpointError(.badIndex, "\(file): \"target_modules\" \"\(pattern)\" adapts \(perLayer[layer].map(\.moduleName)) in layer \(layer) but \(first.map(\.moduleName)) in layer 0; MeshLM adapts the same projections in every layer")
        }
        return first
    }

    /// Whether a JSON value is PEFT's "off": null, false (or 0), an empty list, object or string.
    static func isUnset(_ value: Any?) -> Bool {
        switch value {
        case nil, is NSNull: true
        case let list as [Any]: list.isEmpty
        case let object as [String: Any]: object.isEmpty
        case let text as String: text.isEmpty
        case let flag as Bool: !flag
        default: false
        }
    }

    /// A JSON value as the file spells it.
    static func describe(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys, .withoutEscapingSlashes]) else { return "\(value)" }
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }
}
