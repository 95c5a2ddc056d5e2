import DataPipeline
import Runtime

/// The `sft:` section of a `meshlm sft` run config (docs/sft.md). `data.train` and `data.eval`
/// are JSONL files of samples there, or directories of them made by `meshlm data sft-tokenize`
/// with these settings — not token shards.
public struct SFTSection: Codable, Sendable, Equatable {
    /// The samples' layout (`auto`: each line by its keys).
    public var format: SFTFormat
    /// ShareGPT's field names and role values.
    public var tags: ShareGPTTags
    /// `auto`: the tokenizer's own chat template (`chat_template.jinja` or `tokenizer_config.json`
    /// beside the starting checkpoint), else ChatML; `chatml`; or a `.jinja` file.
    public var template: String
    public var trainOnPrompt: Bool
    public var maskHistory: Bool
    public var truncation: SFTTruncation
    /// How samples are packed into rows.
    public var packing: SFTPacking
    /// The checkpoint to fine-tune (`--init-from` overrides it).
    public var initFrom: String?

    enum CodingKeys: String, CodingKey {
        case format, tags, template, trainOnPrompt = "train_on_prompt", maskHistory = "mask_history", truncation, packing
        case initFrom = "init_from"
    }

    public init() {
        format = .auto
        tags = ShareGPTTags()
        template = "auto"
        trainOnPrompt = false
        maskHistory = false
        truncation = .drop
        packing = .auto
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(.format, default: .auto)
        tags = try c.decode(.tags, default: ShareGPTTags())
        template = try c.decode(.template, default: "auto")
        trainOnPrompt = try c.decode(.trainOnPrompt, default: false)
        maskHistory = try c.decode(.maskHistory, default: false)
        truncation = try c.decode(.truncation, default: .drop)
        packing = try c.decode(.packing, default: .auto)
        initFrom = try c.decodeIfPresent(String.self, forKey: .initFrom)
    }

    public var options: SFTTokenization.Options { .init(trainOnPrompt: trainOnPrompt, maskHistory: maskHistory) }
}
