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
public struct CheckpointExtras: Sendable {
    public static let modelConfigName = "model_config.json"
    public static let runConfigName = "run_config.json"
    public static let tokenizerIdentityName = "tokenizer_identity.json"
    public static let tokenizerName = "tokenizer.json"

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
        if let tokenizerFile {
            guard let data = FileManager.default.contents(atPath: tokenizerFile) else {
                throw CheckpointError(.missingFile, "cannot read the tokenizer file \(tokenizerFile) to save with the checkpoint")
            }
            files[Self.tokenizerName] = data
        }
    }
}
