import Checkpoint
import Foundation
import Runtime
import Model

/// A model config in the form of Hugging Face's `config.json` (what `transformers`' `LlamaConfig`,
/// `Qwen2Config` and `Qwen3Config` read and write): MeshLM's `LlamaConfig` keys plus the fixed
/// facts of the architectures MeshLM implements (SiLU MLP, no MLP or o_proj biases, no sliding
/// window).
public enum HuggingFaceConfig {
    /// The `architectures` entry of each model type's causal LM, or (`scoreHead`) of its
    /// sequence-classification model (the scalar head `score.weight`).
    public static func architecture(of type: LlamaConfig.ModelType, scoreHead: Bool = false) -> String {
        let family = switch type {
        case .llama: "Llama"
        case .qwen2: "Qwen2"
        case .qwen3: "Qwen3"
        case .mixtral: "Mixtral"
        case .qwen2MoE: "Qwen2Moe"
        case .qwen3MoE: "Qwen3Moe"
        }
        return family + (scoreHead ? "ForSequenceClassification" : "ForCausalLM")
    }

    /// `config.json` bytes for `model` (stored as `model_config.json` in checkpoints, as
    /// `config.json` by `meshlm ckpt export-hf`).
    public static func encode(_ model: LlamaConfig, torchDtype: String = "float32") throws -> Data {
        let fields = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(model))
        guard var object = fields as? [String: Any] else { preconditionFailure("LlamaConfig encodes to a JSON object") }
        if !model.modelType.hasExperts {
            for key in ["num_local_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
                        "mlp_only_layers", "router_aux_loss_coef", "router_aux_loss_type", "router_z_loss_coef", "moe_capacity_factor",
                        "shared_expert_intermediate_size"] {
                object[key] = nil
            }
        } else {
            // transformers computes no router loss unless asked; MeshLM's own routing keys
            // (router_aux_loss_type, router_z_loss_coef, moe_capacity_factor) ride along.
            object["output_router_logits"] = false
        }
        if model.hasScoreHead {
            // transformers writes the labels as id2label / label2id (num_labels is kept too, for
            // readers of model_config.json that take MeshLM's keys only).
            let labels = (0..<model.numLabels).map { "LABEL_\($0)" }
            object["id2label"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { (String($0), $1) })
            object["label2id"] = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        } else {
            object["num_labels"] = nil
        }
        object["rope_scaling"] = object["rope_scaling"] ?? NSNull()
        object["architectures"] = [architecture(of: model.modelType, scoreHead: model.hasScoreHead)]
        object["hidden_act"] = "silu"
        object["attention_dropout"] = 0.0
        object["initializer_range"] = 0.02
        object["use_cache"] = true
        object["torch_dtype"] = torchDtype
        switch model.modelType {
        case .llama:
            object["mlp_bias"] = false
            object["pretraining_tp"] = 1
        case .qwen2:
            object["attention_bias"] = nil  // transformers' Qwen2 has no such key: its biases are fixed
            object["use_sliding_window"] = false
        case .qwen3:
            object["use_sliding_window"] = false
        case .mixtral:
            // Mixtral's experts are intermediate_size wide and every layer is sparse.
            for key in ["moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step", "mlp_only_layers", "shared_expert_intermediate_size"] {
                object[key] = nil
            }
            object["sliding_window"] = NSNull()
            object["router_jitter_noise"] = 0.0
        case .qwen2MoE, .qwen3MoE:
            // transformers 4's Qwen-MoE reads num_experts; 5 reads num_local_experts (and maps the old name).
            object["num_experts"] = model.numLocalExperts
            object["use_sliding_window"] = false
            if model.modelType == .qwen2MoE {
                object["attention_bias"] = nil  // transformers' Qwen2-MoE calls it qkv_bias
                object["qkv_bias"] = true
            } else {
                object["shared_expert_intermediate_size"] = nil
            }
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// Reads a Hugging Face (or MeshLM `model_config.json`) config, refusing what MeshLM cannot
    /// run, naming the field: another architecture, unsupported biases, another activation, a
    /// sliding window.
    public static func decode(_ data: Data, file: String) throws -> LlamaConfig {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError(.badIndex, "\(file) is not a JSON object")
        }
        let supported = LlamaConfig.ModelType.allCases.map(\.rawValue).joined(separator: ", ")
        let typeName = object["model_type"] as? String ?? "llama"
        guard let type = LlamaConfig.ModelType(rawValue: typeName) else {
            throw CheckpointError(.badIndex, "\(file): \"model_type\" is \"\(typeName)\"; MeshLM runs \(supported) models")
        }
        let architectures = object["architectures"] as? [String]
        let scoreHead = architectures?.contains(architecture(of: type, scoreHead: true)) ?? false
        if let architectures, !scoreHead, !architectures.contains(architecture(of: type)) {
            throw CheckpointError(.badIndex, "\(file): \"architectures\" is \(architectures); MeshLM runs a \(type.rawValue) model as \(architecture(of: type)) or \(architecture(of: type, scoreHead: true))")
        }
        if let activation = object["hidden_act"] as? String, activation != "silu" {
            throw CheckpointError(.badIndex, "\(file): \"hidden_act\" is \"\(activation)\"; MeshLM's MLP is SwiGLU with \"silu\"")
        }
        if (object["mlp_bias"] as? Bool) == true {
            throw CheckpointError(.badIndex, "\(file): \"mlp_bias\" is true; MeshLM's MLP has no biases")
        }
        if !type.hasAttentionBias, (object["attention_bias"] as? Bool) == true {
            throw CheckpointError(.badIndex, "\(file): \"attention_bias\" is true; a \(type.rawValue) model would then bias o_proj too, which MeshLM does not implement (it runs q/k/v biases as qwen2 has them)")
        }
        if let window = object["sliding_window"] as? Int, type == .mixtral, window < (object["max_position_embeddings"] as? Int ?? 0) {
            throw CheckpointError(.badIndex, "\(file): \"sliding_window\" is \(window); MeshLM attends to the whole context (no sliding window)")
        }
        if let jitter = object["router_jitter_noise"] as? Double, jitter != 0 {
            throw CheckpointError(.badIndex, "\(file): \"router_jitter_noise\" is \(jitter); MeshLM's router has no jitter (use 0)")
        }
        if (object["use_sliding_window"] as? Bool) == true {
            throw CheckpointError(.badIndex, "\(file): \"use_sliding_window\" is true; MeshLM attends to the whole context (no sliding window)")
        }
        if let scaling = object["rope_scaling"] as? [String: Any], let type = (scaling["rope_type"] ?? scaling["type"]) as? String, type != "llama3" {
            throw CheckpointError(.badIndex, "\(file): \"rope_scaling.rope_type\" is \"\(type)\"; MeshLM implements only \"llama3\" scaling")
        }
        var cleaned = object
        // A sequence-classification model's labels: num_labels, else id2label's count, else
        // transformers' default of 2. A causal LM has none (its id2label, if any, means nothing).
        if scoreHead {
            cleaned["num_labels"] = object["num_labels"] as? Int ?? (object["id2label"] as? [String: Any])?.count ?? 2
        } else {
            cleaned["num_labels"] = nil
        }
        // Qwen-MoE names the expert count num_experts; transformers' own MoE keys MeshLM does
        // not read are dropped.
        if type == .qwen2MoE || type == .qwen3MoE, object["num_local_experts"] == nil, let experts = object["num_experts"] {
            cleaned["num_local_experts"] = experts
        }
        if type == .qwen2MoE, (object["qkv_bias"] as? Bool) == false {
            throw CheckpointError(.badIndex, "\(file): \"qkv_bias\" is false; MeshLM runs qwen2_moe with its q/k/v biases")
        }
        for key in ["num_experts", "output_router_logits", "router_jitter_noise", "sliding_window", "qkv_bias"] { cleaned[key] = nil }
        // transformers' Qwen2 always has q/k/v biases, whatever attention_bias says.
        if type.hasAttentionBias { cleaned["attention_bias"] = true }
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
            throw CheckpointError(.badIndex, "\(file) is not a usable model config: \(describe(error))")
        }
        do { try model.validate() } catch { throw CheckpointError(.badIndex, "\(file): \(error)") }
        return model
    }
}
