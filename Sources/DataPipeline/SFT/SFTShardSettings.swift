import Foundation

/// The `sft` section of the manifest of a tokenized SFT sample directory (`meshlm data
/// sft-tokenize`): the settings the samples were rendered, masked and fitted with, which a
/// `meshlm sft` run reading them must share, and what became of the samples.
public struct SFTShardSettings: Codable, Equatable, Sendable {
    /// `sft.format` and `sft.tags`: how the records were read.
    public var format: SFTFormat
    public var tags: ShareGPTTags
    /// `sft.template` as given (`auto`, `chatml` or a file), for people; runs compare the hash.
    public var template: String
    /// `sha256:` of the template text and the special tokens it was rendered with
    /// (`SFTShardSettings.templateHash`).
    public var templateHash: String
    public var trainOnPrompt: Bool
    public var maskHistory: Bool
    /// `sft.truncation` and `train.seq_len`: samples were cut or dropped to fit rows this long.
    public var truncation: SFTTruncation
    public var sequenceLength: Int
    /// Supervised tokens over all samples written.
    public var supervisedTokens: Int
    /// Samples longer than `sequenceLength` that were cut and kept.
    public var truncatedSamples: Int
    /// Samples left out: too long (`drop`), or no supervised token after the first.
    public var droppedSamples: Int

    public init(format: SFTFormat, tags: ShareGPTTags, template: String, templateHash: String, trainOnPrompt: Bool,
                maskHistory: Bool, truncation: SFTTruncation, sequenceLength: Int,
                supervisedTokens: Int = 0, truncatedSamples: Int = 0, droppedSamples: Int = 0) {
        self.format = format
        self.tags = tags
        self.template = template
        self.templateHash = templateHash
        self.trainOnPrompt = trainOnPrompt
        self.maskHistory = maskHistory
        self.truncation = truncation
        self.sequenceLength = sequenceLength
        self.supervisedTokens = supervisedTokens
        self.truncatedSamples = truncatedSamples
        self.droppedSamples = droppedSamples
    }

    enum CodingKeys: String, CodingKey {
        case format, tags, template
        case templateHash = "template_hash"
        case trainOnPrompt = "train_on_prompt"
        case maskHistory = "mask_history"
        case truncation
        case sequenceLength = "seq_len"
        case supervisedTokens = "supervised_tokens"
        case truncatedSamples = "truncated_samples"
        case droppedSamples = "dropped_samples"
    }

    /// `sha256:` of the template text, then for each special token in name order a line
    /// `name=value`: equal hashes mean equal renderings.
    public static func templateHash(template: String, specialTokens: [String: String]) -> String {
        var text = template
        for name in specialTokens.keys.sorted() { text += "\n\(name)=\(specialTokens[name] ?? "")" }
        return "sha256:" + SHA256.hex(of: Array(text.utf8))
    }

    /// The first setting (of those that shape the samples, counts aside) in which `self` and
    /// `run` differ, as `key: this value, run value`; nil when they agree.
    public func difference(from run: SFTShardSettings) -> (key: String, shards: String, run: String)? {
        ShardSetting.first([
            ShardSetting("sft.format", format.rawValue, run.format.rawValue),
            ShardSetting("sft.tags", ShardSetting.text(tags), ShardSetting.text(run.tags)),
            ShardSetting("sft.template", "\(template) (\(templateHash))", "\(run.template) (\(run.templateHash))",
                         differs: templateHash != run.templateHash),
            ShardSetting("sft.train_on_prompt", "\(trainOnPrompt)", "\(run.trainOnPrompt)"),
            ShardSetting("sft.mask_history", "\(maskHistory)", "\(run.maskHistory)"),
            ShardSetting("sft.truncation", truncation.rawValue, run.truncation.rawValue),
            ShardSetting("train.seq_len", "\(sequenceLength)", "\(run.sequenceLength)"),
        ])
    }
}
