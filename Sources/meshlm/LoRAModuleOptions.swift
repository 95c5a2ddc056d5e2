import ArgumentParser
import Foundation
import Model
import Serving
import Training

/// `--lora NAME=DIR` (vLLM's `--lora-modules NAME=DIR` too): LoRA adapters served unmerged over
/// the base, each chosen by requests naming it as their `model` (docs/serving.md, "Serving LoRA
/// adapters").
struct LoRAModuleOptions: ParsableArguments {
    @Option(name: [.customLong("lora"), .customLong("lora-modules")], parsing: .upToNextOption,
            help: ArgumentHelp("A LoRA adapter to serve over the base, unmerged, as model NAME (repeatable; several NAME=DIR may follow one flag; vLLM's JSON form {\"name\": NAME, \"path\": DIR} too). DIR: a MeshLM LoRA checkpoint (run, checkpoints or step directory) or a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).",
                               valueName: "NAME=DIR"))
    var lora: [String] = []

    /// The NAME=DIR pairs in the order given (empty NAME and DIR for an argument of neither form).
    var modules: [(name: String, directory: String)] {
        lora.map { argument in
            if argument.hasPrefix("{") {
                let object = (try? JSONSerialization.jsonObject(with: Data(argument.utf8))) as? [String: Any]
                return (object?["name"] as? String ?? "", object?["path"] as? String ?? "")
            }
            let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), parts.count == 2 ? String(parts[1]) : "")
        }
    }

    /// Checks the pairs' syntax and that no NAME repeats or is `baseName`.
    func validate(baseName: String) throws {
        var seen: Set<String> = []
        for (argument, module) in zip(lora, modules) {
            guard argument.hasPrefix("{") || argument.contains("="), !module.name.isEmpty, !module.directory.isEmpty else {
                throw ValidationError("--lora \(argument): expected NAME=DIR (the model name requests use, then the adapter's directory) or {\"name\": NAME, \"path\": DIR}")
            }
            if let bad = module.name.first(where: { $0.isWhitespace || $0 == "\"" || $0 == "\\" }) {
                throw ValidationError("--lora \(argument): the name \"\(module.name)\" contains \(bad == "\"" || bad == "\\" ? "'\(bad)'" : "whitespace"); model names are sent in requests and shown in /metrics labels")
            }
            guard module.name != baseName else {
                throw ValidationError("--lora \(argument): \(module.name) is the base model's name (--served-model-name); give the adapter another name")
            }
            guard seen.insert(module.name).inserted else {
                throw ValidationError("--lora \(argument): the name \(module.name) is given twice; each adapter needs its own name")
            }
        }
    }

    /// Reads every adapter and checks it against the base `config`.
    func load(base config: LlamaConfig) throws -> [ServedAdapter] {
        try modules.map { module in try Self.load(name: module.name, directory: module.directory, base: config) }
    }

    /// One adapter: a PEFT directory (it has adapter_model.safetensors) or a MeshLM checkpoint.
    static func load(name: String, directory: String, base config: LlamaConfig) throws -> ServedAdapter {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ServingError(.checkpoint, "--lora \(name)=\(directory): \(directory) is not a directory")
        }
        guard FileManager.default.fileExists(atPath: directory + "/" + PeftAdapter.weightsName) else {
            return try ServedAdapter.load(name: name, checkpoint: directory, base: config)
        }
        let configPath = directory + "/" + PeftAdapter.configName
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ServingError(.checkpoint, "adapter \(name): \(configPath) is missing: a PEFT adapter directory holds adapter_config.json beside adapter_model.safetensors")
        }
        // DoRA and modules_to_save get serving's reason (merge first) before PEFT's checks.
        if let settings = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            var declared = LoRAConfig(rank: 1, alpha: 1, weightDecomposed: settings["use_dora"] as? Bool ?? false)
            declared.modulesToSave = settings["modules_to_save"] as? [String] ?? []
            try ServedAdapter.checkServable(declared, source: "adapter \(name) (\(directory))")
        }
        let source: PeftAdapter.Source
        do { source = try PeftAdapter.open(directory, model: config) } catch {
            throw ServingError(.checkpoint, "adapter \(name): \(error)")
        }
        let shapes = Dictionary(uniqueKeysWithValues: PeftAdapter.tensors(source.lora, model: config).map { ($0.name, $0.shape) })
        return try ServedAdapter(name: name, root: directory, lora: source.lora, base: config, source: directory) { tensor in
            guard let shape = shapes[tensor] else { return nil }
            return (shape, try source.values(of: tensor))
        }
    }
}
