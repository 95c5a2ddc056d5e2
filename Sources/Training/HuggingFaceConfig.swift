import Checkpoint
import Foundation
import Model

/// A Llama model config in the form of Hugging Face's `config.json` (what `transformers`'
/// `LlamaConfig` reads and writes): MeshLM's `LlamaConfig` keys plus the fixed facts of the
/// architecture MeshLM implements (SiLU MLP, no biases).
public enum HuggingFaceConfig {
    public static let architecture = "LlamaForCausalLM"
    public static let modelType = "llama"

    /// `config.json` bytes for `model` (stored as `model_config.json` in checkpoints, as
    /// `config.json` by `meshlm ckpt export-hf`).
    public static func encode(_ model: LlamaConfig, torchDtype: String = "float32") throws -> Data {
        let fields = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(model))
        guard var object = fields as? [String: Any] else { preconditionFailure("LlamaConfig encodes to a JSON object") }
        if model.numLocalExperts == 0 {
            object["num_local_experts"] = nil
            object["num_experts_per_tok"] = nil
        }
        object["rope_scaling"] = object["rope_scaling"] ?? NSNull()
        object["architectures"] = [architecture]
        object["model_type"] = modelType
        object["hidden_act"] = "silu"
        object["attention_bias"] = false
        object["attention_dropout"] = 0.0
        object["mlp_bias"] = false
        object["initializer_range"] = 0.02
        object["pretraining_tp"] = 1
        object["use_cache"] = true
        object["torch_dtype"] = torchDtype
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// Reads a Hugging Face (or MeshLM `model_config.json`) config, refusing what MeshLM cannot
    /// run, naming the field: another architecture, biases, another activation.
    public static func decode(_ data: Data, file: String) throws -> LlamaConfig {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badIndex, "\(file) is not a JSON object")
        }
        if let architectures = object["architectures"] as? [String], !architectures.contains(architecture) {
            throw CheckpointError(.badIndex, "\(file): \"architectures\" is \(architectures); MeshLM runs only \(architecture) (Llama) models")
        }
        if let type = object["model_type"] as? String, type != modelType {
            throw CheckpointError(.badIndex, "\(file): \"model_type\" is \"\(type)\"; MeshLM runs only \"\(modelType)\" models")
        }
        if let activation = object["hidden_act"] as? String, activation != "silu" {
            throw CheckpointError(.badIndex, "\(file): \"hidden_act\" is \"\(activation)\"; MeshLM's MLP is SwiGLU with \"silu\"")
        }
        for key in ["attention_bias", "mlp_bias"] where (object[key] as? Bool) == true {
            throw CheckpointError(.badIndex, "\(file): \"\(key)\" is true; MeshLM's Llama has no biases")
        }
        if let scaling = object["rope_scaling"] as? [String: Any], let type = (scaling["rope_type"] ?? scaling["type"]) as? String, type != "llama3" {
            throw CheckpointError(.badIndex, "\(file): \"rope_scaling.rope_type\" is \"\(type)\"; MeshLM implements only \"llama3\" scaling")
        }
        var cleaned = object
        // transformers 5 nests RoPE settings in `rope_parameters` (rope_type "default" = none).
        if let parameters = object["rope_parameters"] as? [String: Any] {
            cleaned["rope_parameters"] = nil
            if let theta = parameters["rope_theta"] { cleaned["rope_theta"] = theta }
            let type = parameters["rope_type"] as? String ?? "default"
            switch type {
            case "default": break
            case "llama3": cleaned["rope_scaling"] = parameters
            default:
                throw CheckpointError(.badIndex, "\(file): \"rope_parameters.rope_type\" is \"\(type)\"; MeshLM implements \"default\" and \"llama3\"")
            }
        }
        // transformers writes eos/bos as a list for some models; MeshLM keeps the first.
        for key in ["eos_token_id", "bos_token_id"] {
            if let list = object[key] as? [Int] { cleaned[key] = list.first } else if object[key] is NSNull { cleaned[key] = nil }
        }
        if cleaned["head_dim"] is NSNull { cleaned["head_dim"] = nil }
        if cleaned["rope_scaling"] is NSNull { cleaned["rope_scaling"] = nil }
        if cleaned["num_key_value_heads"] is NSNull { cleaned["num_key_value_heads"] = nil }
        let model: LlamaConfig
        do {
            model = try JSONDecoder().decode(LlamaConfig.self, from: try JSONSerialization.data(withJSONObject: cleaned))
        } catch {
            throw CheckpointError(.badIndex, "\(file) is not a usable Llama config: \(error)")
        }
        do { try model.validate() } catch { throw CheckpointError(.badIndex, "\(file): \(error)") }
        return model
    }
}
