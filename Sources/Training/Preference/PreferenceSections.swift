import DataPipeline
import Runtime

/// The `preference:` section of a `meshlm dpo` or `meshlm reward` run config (docs/alignment.md):
/// how the pairs in `data.train` / `data.eval` (JSONL) are read, rendered and packed.
public struct PreferenceSection: Codable, Sendable, Equatable {
    /// The pairs' layout (`auto`: each line by its keys).
    public var format: PreferenceFormat
    /// ShareGPT's field names and role values.
    public var tags: ShareGPTTags
    /// `auto` (the tokenizer's own chat template beside the starting checkpoint, else ChatML),
    /// `chatml`, or a `.jinja` file — as `sft.template`.
    public var template: String
    /// A pair whose chosen and rejected sequences together exceed `train.seq_len`: `drop` it, or
    /// cut both to half a row (`keep_start` / `keep_end`).
    public var truncation: SFTTruncation
    public var packing: SFTPacking
    /// The checkpoint to align (`--init-from` overrides it): an SFT run's.
    public var initFrom: String?

    enum CodingKeys: String, CodingKey {
        case format, tags, template, truncation, packing, initFrom = "init_from"
    }

    public init() {
        format = .auto
        tags = ShareGPTTags()
        template = "auto"
        truncation = .drop
        packing = .auto
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        format = try c.decode(.format, default: .auto)
        tags = try c.decode(.tags, default: ShareGPTTags())
        template = try c.decode(.template, default: "auto")
        truncation = try c.decode(.truncation, default: .drop)
        packing = try c.decode(.packing, default: .auto)
        initFrom = try c.decodeIfPresent(String.self, forKey: .initFrom)
    }

    /// The SFT settings pairs are rendered with: only the answer after the prompt is supervised.
    public var chatSettings: SFTSection {
        var sft = SFTSection()
        sft.template = template
        sft.maskHistory = true
        sft.trainOnPrompt = false
        return sft
    }
}

extension PreferenceLoss.Kind: ConfigChoice {}

/// The `dpo:` section: the loss, with TRL's names and defaults (docs/alignment.md).
public struct DPOSection: Codable, Sendable, Equatable {
    /// TRL's `loss_type`: one kind or a list (`sigmoid`, `hinge`, `ipo`, `robust`, `sigmoid_norm`,
    /// `sft`, `simpo`, `orpo`); default `sigmoid`. RPO is `[sigmoid, sft]` with `loss_weights: [1, α]`
    /// (TRL 1.x dropped `rpo_alpha` for this).
    public var lossType: [PreferenceLoss.Kind]
    /// One weight per `loss_type` entry (default 1 each).
    public var lossWeights: [Double]?
    public var beta: Double
    /// ε: the label-flip rate `robust` assumes and SimPO's smoothing (TRL's DPO `sigmoid` has none).
    public var labelSmoothing: Double
    public var simpoGamma: Double
    /// SimPO's NLL weight (TRL's `CPOConfig.cpo_alpha`, 1.0; the SimPO paper uses 0).
    public var cpoAlpha: Double
    /// The reference model's checkpoint (default: the checkpoint training starts from, i.e. the
    /// policy before its first step).
    public var reference: String?

    enum CodingKeys: String, CodingKey {
        case lossType = "loss_type", lossWeights = "loss_weights", beta, labelSmoothing = "label_smoothing"
        case simpoGamma = "simpo_gamma", cpoAlpha = "cpo_alpha", reference
    }

    public init() {
        lossType = [.sigmoid]
        beta = 0.1
        labelSmoothing = 0
        simpoGamma = 0.5
        cpoAlpha = 1
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // A single name is decoded as the choice it must be, so a wrong one is named as such
        // (not as "expected a list").
        if (try? c.decode(String.self, forKey: .lossType)) != nil {
            lossType = [try c.decode(PreferenceLoss.Kind.self, forKey: .lossType)]
        } else {
            lossType = try c.decode(.lossType, default: [.sigmoid])
        }
        lossWeights = try c.decodeIfPresent([Double].self, forKey: .lossWeights)
        beta = try c.decode(.beta, default: 0.1)
        labelSmoothing = try c.decode(.labelSmoothing, default: 0)
        simpoGamma = try c.decode(.simpoGamma, default: 0.5)
        cpoAlpha = try c.decode(.cpoAlpha, default: 1)
        reference = try c.decodeIfPresent(String.self, forKey: .reference)
    }

    /// The loss these keys describe, or the key that is wrong.
    public func loss() throws(ConfigError) -> PreferenceLoss {
        guard !lossType.isEmpty else { throw .invalid("dpo.loss_type", "[]", "name at least one loss") }
        let weights = lossWeights ?? [Double](repeating: 1, count: lossType.count)
        guard weights.count == lossType.count else {
            throw .invalid("dpo.loss_weights", weights, "needs one weight per loss_type entry (\(lossType.count))")
        }
        guard beta > 0 else { throw .invalid("dpo.beta", beta, "must be > 0") }
        guard labelSmoothing >= 0 && labelSmoothing < 0.5 else { throw .invalid("dpo.label_smoothing", labelSmoothing, "must lie in [0, 0.5)") }
        var terms = zip(lossType, weights).map { PreferenceLoss.Term($0, weight: $1) }
        if lossType.contains(.simpo) && cpoAlpha != 0 { terms.append(PreferenceLoss.Term(.sft, weight: cpoAlpha)) }
        let free = terms.filter { $0.kind == .simpo || $0.kind == .orpo }
        if !free.isEmpty, let other = terms.first(where: { $0.kind != .sft && $0.kind != .simpo && $0.kind != .orpo }) {
            throw .invalid("dpo.loss_type", lossType.map(\.rawValue), "simpo and orpo use no reference and combine with sft only, not with \(other.kind.rawValue)")
        }
        return PreferenceLoss(terms: terms, beta: beta, labelSmoothing: labelSmoothing, simpoGamma: simpoGamma)
    }
}

/// The `reward:` section of a reward-model run.
public struct RewardSection: Codable, Sendable, Equatable {
    /// TRL's `center_rewards_coefficient` (default none): adds c · mean((r_chosen + r_rejected)²)
    /// so rewards stay centred at 0.
    public var centerRewardsCoefficient: Double?

    enum CodingKeys: String, CodingKey { case centerRewardsCoefficient = "center_rewards_coefficient" }

    public init() {}
}

/// The `kto:` section (`meshlm kto`), TRL's `KTOConfig` names and defaults.
public struct KTOSection: Codable, Sendable, Equatable {
    public var beta: Double
    /// Weights of the desirable and undesirable samples' losses (to rebalance unequal counts).
    public var desirableWeight: Double
    public var undesirableWeight: Double
    /// The reference model's checkpoint (default: the checkpoint training starts from).
    public var reference: String?

    enum CodingKeys: String, CodingKey {
        case beta, desirableWeight = "desirable_weight", undesirableWeight = "undesirable_weight", reference
    }

    public init() {
        beta = 0.1
        desirableWeight = 1
        undesirableWeight = 1
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        beta = try c.decode(.beta, default: 0.1)
        desirableWeight = try c.decode(.desirableWeight, default: 1)
        undesirableWeight = try c.decode(.undesirableWeight, default: 1)
        reference = try c.decodeIfPresent(String.self, forKey: .reference)
    }
}
