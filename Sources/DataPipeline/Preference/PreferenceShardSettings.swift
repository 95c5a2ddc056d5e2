import Foundation
import Runtime

/// The `preference` section of the manifest of a tokenized preference directory (`meshlm data
/// pref-tokenize`): what it holds, the settings its samples were rendered and fitted with (which
/// a `meshlm dpo`, `reward` or `kto` run reading it must share) and what fitting kept and left out.
public struct PreferenceShardSettings: Codable, Equatable, Sendable {
    /// What the samples are.
    public enum Kind: String, ConfigChoice {
        /// Preference pairs (`meshlm dpo`, `meshlm reward`): pair p is samples 2p (chosen) and
        /// 2p + 1 (rejected); each sample's value is the pair's margin (NaN when it has none).
        case pairs
        /// KTO samples (`meshlm kto`): one sample each; its value is 1 desirable, 0 undesirable.
        case unpaired

        /// "preference pairs", "KTO samples".
        public var noun: String { self == .pairs ? "preference pairs" : "KTO samples" }
    }

    public var kind: Kind
    /// `preference.format` and `preference.tags` (pairs only: KTO samples have one layout).
    public var format: PreferenceFormat?
    public var tags: ShareGPTTags?
    /// `preference.template` as given, for people; runs compare the hash
    /// (`SFTShardSettings.templateHash`).
    public var template: String
    public var templateHash: String
    /// `preference.truncation` and `train.seq_len`: what the samples were fitted to.
    public var truncation: SFTTruncation
    public var sequenceLength: Int
    /// Pairs (or KTO samples) written, the truncated ones included.
    public var kept: Int
    /// Of those, cut to fit (`keep_start` / `keep_end`).
    public var truncated: Int
    /// Left out as longer than a row.
    public var tooLong: Int
    /// Left out with nothing supervised on a side.
    public var unsupervised: Int
    /// Pairs skipped as identical (chosen = rejected), and the `file:line` of the first few.
    public var identicalPairs: Int
    public var identicalSources: [String]

    public init(kind: Kind, format: PreferenceFormat?, tags: ShareGPTTags?, template: String, templateHash: String,
                truncation: SFTTruncation, sequenceLength: Int) {
        self.kind = kind
        self.format = format
        self.tags = tags
        self.template = template
        self.templateHash = templateHash
        self.truncation = truncation
        self.sequenceLength = sequenceLength
        kept = 0
        truncated = 0
        tooLong = 0
        unsupervised = 0
        identicalPairs = 0
        identicalSources = []
    }

    enum CodingKeys: String, CodingKey {
        case kind, format, tags, template
        case templateHash = "template_hash"
        case truncation
        case sequenceLength = "seq_len"
        case kept, truncated
        case tooLong = "too_long"
        case unsupervised
        case identicalPairs = "identical_pairs"
        case identicalSources = "identical_sources"
    }

    /// The first setting (of those that shape the samples, counts aside) in which `self` and
    /// `run` differ, as `key: this value, run value`; nil when they agree. The kinds must agree
    /// (`PreferenceShardSet` checks it first).
    public func difference(from run: PreferenceShardSettings) -> (key: String, shards: String, run: String)? {
        precondition(kind == run.kind, "compare settings of one kind")
        var settings: [ShardSetting] = []
        if kind == .pairs {
            settings.append(ShardSetting("preference.format", format?.rawValue ?? "none", run.format?.rawValue ?? "none"))
            settings.append(ShardSetting("preference.tags", ShardSetting.text(tags), ShardSetting.text(run.tags)))
        }
        settings.append(ShardSetting("preference.template", "\(template) (\(templateHash))", "\(run.template) (\(run.templateHash))",
                                     differs: templateHash != run.templateHash))
        settings.append(ShardSetting("preference.truncation", truncation.rawValue, run.truncation.rawValue))
        settings.append(ShardSetting("train.seq_len", "\(sequenceLength)", "\(run.sequenceLength)"))
        return ShardSetting.first(settings)
    }
}

/// One setting a sample directory recorded beside the run's, as text for a message.
struct ShardSetting {
    let key: String
    let shards: String
    let run: String
    let differs: Bool

    init(_ key: String, _ shards: String, _ run: String, differs: Bool? = nil) {
        self.key = key
        self.shards = shards
        self.run = run
        self.differs = differs ?? (shards != run)
    }

    /// JSON with sorted keys (tags), so equal values are equal text.
    static func text<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
    }

    static func first(_ settings: [ShardSetting]) -> (key: String, shards: String, run: String)? {
        settings.first(where: \.differs).map { ($0.key, $0.shards, $0.run) }
    }
}
