import Checkpoint
import DataPipeline
import Foundation
import Model

/// The files a pretraining checkpoint carries beside its tensors so that export, serving and
/// evaluation need only the directory (docs/checkpoints.md, "Files"):
///
/// - `model_config.json`: the model in Hugging Face `config.json` form (`HuggingFaceConfig`).
/// - `run_config.json`: the resolved run config.
/// - `tokenizer_identity.json`: the training data's tokenizer (from the shards' manifest).
/// - `tokenizer.json`: a copy of the tokenizer definition, when one is known.
/// - `adapter_config.json`: with LoRA, the adapters' settings in PEFT's form, so serving can
///   merge them and PEFT can read them.
public struct CheckpointExtras: Sendable {
    public static let modelConfigName = "model_config.json"
    public static let runConfigName = "run_config.json"
    public static let tokenizerIdentityName = "tokenizer_identity.json"
    public static let tokenizerName = "tokenizer.json"
    public static let adapterConfigName = "adapter_config.json"

    public var files: [String: Data]

    public init(files: [String: Data] = [:]) { self.files = files }

    /// The extras of a pretraining run. `tokenizerFile` is copied when given (a BPE tokenizer's
    /// `tokenizer.json`); `tokenizer` comes from the training shards' manifest, if they have one.
    public init(config: PretrainConfig, tokenizer: TokenizerIdentity?, tokenizerFile: String?) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var model = config.model
        if model.bosTokenId == nil, let bos = tokenizer?.bosId { model.bosTokenId = Int(bos) }
        if model.eosTokenId == nil, let eos = tokenizer?.eosId { model.eosTokenId = Int(eos) }
        files = [Self.modelConfigName: try HuggingFaceConfig.encode(model),
                 Self.runConfigName: try encoder.encode(config)]
        if let tokenizer { files[Self.tokenizerIdentityName] = try encoder.encode(tokenizer) }
        if let lora = config.lora { files[Self.adapterConfigName] = try Self.adapterConfig(lora) }
        if let tokenizerFile {
            guard let data = FileManager.default.contents(atPath: tokenizerFile) else {
                throw CheckpointError(.missingFile, "cannot read the tokenizer file \(tokenizerFile) to save with the checkpoint")
            }
            files[Self.tokenizerName] = data
        }
    }

    /// PEFT's `adapter_config.json` for `lora` (the keys PEFT's `LoraConfig` needs; MeshLM's
    /// adapters have no dropout at inference and no biases). `taskType` is PEFT's: `CAUSAL_LM`,
    /// or `SEQ_CLS` for a model with a scalar head. `ensureWeightTying` keeps a tied lm_head on
    /// the trained copy of embed_tokens in PEFT, as MeshLM's tied model computes.
    public static func adapterConfig(_ lora: LoRAConfig, taskType: String = "CAUSAL_LM", ensureWeightTying: Bool = false) throws -> Data {
        let object: [String: Any] = [
            "peft_type": "LORA", "task_type": taskType, "r": lora.rank, "lora_alpha": lora.alpha,
            "target_modules": lora.targets.map(\.moduleName), "use_rslora": lora.rankStabilized, "lora_dropout": lora.dropout,
            "bias": "none", "fan_in_fan_out": false, "use_dora": lora.weightDecomposed,
            "modules_to_save": lora.modulesToSave.isEmpty ? NSNull() : lora.modulesToSave as Any,
            "base_model_name_or_path": NSNull(), "inference_mode": true, "ensure_weight_tying": ensureWeightTying,
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
