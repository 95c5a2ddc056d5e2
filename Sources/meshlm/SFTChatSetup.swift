import Checkpoint
import DataPipeline
import Foundation
import Runtime
import Training

/// The tokenizer and chat template SFT samples are rendered with, chosen the same way by
/// `meshlm sft` and `meshlm data sft-tokenize`: the checkpoint's `tokenizer.json` (or the one
/// given), and `sft.template` — `auto` (the tokenizer's own template beside the checkpoint, else
/// ChatML), `chatml`, or a `.jinja` file.
struct SFTChatSetup {
    let tokenizer: any Tokenizer
    /// The tokenizer.json to save with the checkpoints (nil for the byte tokenizer).
    let tokenizerFile: String?
    /// The chat template text used (saved with the checkpoints, for serving).
    let template: String
    let templateSource: String
    let specialTokens: [String: String]

    /// A run directory stands for its checkpoints, as for generate, serve and eval.
    static func checkpointSource(_ source: String) -> String {
        CheckpointReader.resolve(source)
    }

    /// `checkpoint` may be nil only when `tokenizer` is given (then `auto` means ChatML).
    init(sft: SFTSection, checkpoint: String?, tokenizer name: String?, vocabSize: Int) throws {
        let step = try checkpoint.map { try CheckpointReader.locate($0).stepDirectory }
        let saved = step.map { $0 + "/" + CheckpointExtras.tokenizerName }
        guard let name = name ?? saved.flatMap({ FileManager.default.fileExists(atPath: $0) ? $0 : nil }) else {
            guard let step else { throw JobError("give the tokenizer: --tokenizer, or the checkpoint whose tokenizer.json to use (--init-from or sft.init_from)") }
            throw JobError("\(step) has no tokenizer.json: SFT renders text with the tokenizer the model was trained with (give it with --tokenizer, import it with the model, or pretrain with --tokenizer-json)")
        }
        tokenizerFile = name == "bytes" ? nil : name
        let tokenizer = try TokenizerLoader.load(name)
        if let step {
            try CheckpointTokenizer.check(tokenizer.identity, source: name == saved ? name : "--tokenizer \(name)",
                                          against: try CheckpointTokenizer.recorded(in: step), checkpoint: step,
                                          remedy: "give the tokenizer the model was trained with, or leave --tokenizer out to use the checkpoint's own")
        }
        self.tokenizer = tokenizer
        guard tokenizer.vocabSize <= vocabSize else {
            throw JobError("tokenizer \(name) has \(tokenizer.vocabSize) ids but model.vocab_size is \(vocabSize)")
        }
        var specialTokens: [String: String] = [:]
        switch sft.template {
        case "chatml":
            (template, templateSource) = (SFTTokenization.chatML, "ChatML (built in)")
        case "auto":
            if let step, let own = try? TokenizerChatTemplates.load(directory: step) {
                (template, templateSource) = (try own.template(), "the tokenizer's own, from \(step)")
                specialTokens = own.specialTokens
            } else {
                (template, templateSource) = (SFTTokenization.chatML, step == nil ? "ChatML (no checkpoint given)" : "ChatML (the tokenizer has none)")
            }
        default:
            guard let text = FileManager.default.contents(atPath: sft.template).flatMap({ String(data: $0, encoding: .utf8) }) else {
                throw JobError("sft.template \(sft.template): no such file (give auto, chatml or a .jinja file)")
            }
            (template, templateSource) = (text, sft.template)
        }
        self.specialTokens = specialTokens
    }

    func tokenization(_ sft: SFTSection) throws -> SFTTokenization {
        SFTTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: template), specialTokens: specialTokens,
                        options: sft.options)
    }

    /// The settings a sample directory made with this setup records (counts zero), and a run
    /// reading one must match.
    func shardSettings(_ sft: SFTSection, sequenceLength: Int) -> SFTShardSettings {
        SFTShardSettings(format: sft.format, tags: sft.tags, template: sft.template,
                         templateHash: SFTShardSettings.templateHash(template: template, specialTokens: specialTokens),
                         trainOnPrompt: sft.trainOnPrompt, maskHistory: sft.maskHistory, truncation: sft.truncation,
                         sequenceLength: sequenceLength)
    }

    /// Preference pairs and KTO samples rendered with this setup (only the final answer supervised).
    func preferenceTokenization() throws -> PreferenceTokenization {
        PreferenceTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: template), specialTokens: specialTokens)
    }

    /// The settings a preference directory of `kind` made with this setup records (counts
    /// zero), and a run reading one must match.
    func preferenceShardSettings(_ preference: PreferenceSection, kind: PreferenceShardSettings.Kind,
                                 sequenceLength: Int) -> PreferenceShardSettings {
        PreferenceShardSettings(kind: kind, format: kind == .pairs ? preference.format : nil, tags: kind == .pairs ? preference.tags : nil,
                                template: preference.template,
                                templateHash: SFTShardSettings.templateHash(template: template, specialTokens: specialTokens),
                                truncation: preference.truncation, sequenceLength: sequenceLength)
    }
}
