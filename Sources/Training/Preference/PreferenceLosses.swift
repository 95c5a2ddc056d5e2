import Foundation

/// One preference pair's sequence log-probabilities: sums of log p(token) over each completion's
/// supervised tokens, under the policy being trained and (for the losses that use one) the frozen
/// reference model.
public struct PairLogProbabilities: Sendable, Equatable {
    /// Policy Σ log p over the chosen completion.
    public var chosen: Double
    /// Policy Σ log p over the rejected completion.
    public var rejected: Double
    /// Completion token counts (> 0): what the length-averaging losses divide by and what the
    /// NLL term is a mean over.
    public var chosenTokens: Int
    public var rejectedTokens: Int
    /// Reference Σ log p (0 when the loss uses none).
    public var referenceChosen: Double
    public var referenceRejected: Double

    public init(chosen: Double, rejected: Double, chosenTokens: Int, rejectedTokens: Int,
                referenceChosen: Double = 0, referenceRejected: Double = 0) {
        precondition(chosenTokens > 0 && rejectedTokens > 0, "a completion has at least one supervised token")
        self.chosen = chosen
        self.rejected = rejected
        self.chosenTokens = chosenTokens
        self.rejectedTokens = rejectedTokens
        self.referenceChosen = referenceChosen
        self.referenceRejected = referenceRejected
    }

    /// Policy log-ratio against the reference, Σ log π − Σ log π_ref.
    var chosenLogRatio: Double { chosen - referenceChosen }
    var rejectedLogRatio: Double { rejected - referenceRejected }
    /// Mean log-probability per completion token (SimPO, ORPO).
    var chosenAverage: Double { chosen / Double(chosenTokens) }
    var rejectedAverage: Double { rejected / Double(rejectedTokens) }
}

/// What `PreferenceLoss.evaluate` returns for a batch of pairs.
public struct PreferenceBatchLoss: Sendable {
    /// This batch's contribution to the step loss.
    public var loss: Double
    /// ∂loss/∂chosen (the policy sum) per pair.
    public var chosenGradients: [Double]
    /// ∂loss/∂rejected (the policy sum) per pair.
    public var rejectedGradients: [Double]
    /// TRL's metric names, each as a sum and the count it is a mean over (pairs, or chosen tokens
    /// for `nll_loss`): `rewards/chosen`, `rewards/rejected`, `rewards/margins`,
    /// `rewards/accuracies`, `logps/chosen`, `logps/rejected`, and `nll_loss`, `log_odds_ratio`,
    /// `log_odds_chosen` where the loss has them.
    public var metrics: [String: MetricSum]
}

/// The pairwise preference losses of TRL 1.x (`DPOTrainer`'s `loss_type`s, SimPO as
/// `CPOTrainer`'s `loss_type="simpo"`, and `ORPOTrainer`), as a weighted list of terms on sequence
/// log-probabilities. Pure arithmetic: the caller runs the models and back-propagates the
/// gradients this returns into each completion's tokens (every supervised token of a completion
/// gets its sum's gradient).
///
/// With Δ = (chosen − referenceChosen) − (rejected − referenceRejected), per-token averages
/// āc = chosen / chosenTokens, ār = rejected / rejectedTokens, β = `beta`, ε = `labelSmoothing`,
/// each kind's per-pair loss ℓ is (logσ(x) = −softplus(−x) throughout):
///
/// | kind | ℓ | TRL |
/// | --- | --- | --- |
/// | `sigmoid` | −logσ(βΔ) | DPO `"sigmoid"` (the default) |
/// | `hinge` | max(0, 1 − βΔ) | DPO `"hinge"` (SLiC) |
/// | `ipo` | (δ − 1/(2β))², δ = (chosen − referenceChosen)/chosenTokens − (rejected − referenceRejected)/rejectedTokens | DPO `"ipo"`: TRL length-averages each log-ratio |
/// | `robust` | (−(1−ε)·logσ(βΔ) + ε·logσ(−βΔ)) / (1 − 2ε) | DPO `"robust"` (rDPO) |
/// | `sigmoidNorm` | −logσ(β·δ), δ as for `ipo` | DPO `"sigmoid_norm"` |
/// | `sft` | none per pair: the NLL term below | DPO `"sft"`, and RPO's `rpo_alpha` of TRL 0.x |
/// | `simpo` | −(1−ε)·logσ(β(āc − ār) − γ) − ε·logσ(−β(āc − ār) + γ), γ = `simpoGamma` | CPO `loss_type="simpo"` |
/// | `orpo` | −β·logσ(L), L = āc − ār − (log(1 − e^āc) − log(1 − e^ār)), plus the NLL term | ORPO |
///
/// The step loss is Σ over terms of weight · (mean over pairs of ℓ), as TRL's
/// `loss += per_sequence_loss.mean() * loss_weight`, plus (NLL coefficient) · the mean −log p over
/// the chosen completions' tokens, where the NLL coefficient is the summed weight of the `sft`
/// and `orpo` terms.
public struct PreferenceLoss: Sendable {
    /// One per-pair loss (see the table on `PreferenceLoss`).
    public enum Kind: String, Sendable, CaseIterable {
        case sigmoid, hinge, ipo, robust
        case sigmoidNorm = "sigmoid_norm"
        case sft, simpo, orpo

        /// Whether TRL trains this kind with `DPOTrainer`, against a reference model (`sft` too:
        /// its rewards are logged against the reference).
        var isDPO: Bool { self != .simpo && self != .orpo }
    }

    /// A kind and its weight (TRL's `loss_type` and `loss_weights`, entry by entry).
    public struct Term: Sendable, Equatable {
        public var kind: Kind
        public var weight: Double

        public init(_ kind: Kind, weight: Double = 1) {
            self.kind = kind
            self.weight = weight
        }
    }

    /// TRL's `loss_type` with `loss_weights` (default `["sigmoid"]`, weights 1).
    public var terms: [Term]
    /// β (`beta`, 0.1 in `DPOConfig`, `CPOConfig` and `ORPOConfig`; ORPO's λ).
    public var beta: Double
    /// ε (`label_smoothing`, default 0): the assumed label-flip rate of `robust` and the conservative
    /// smoothing of `simpo`. TRL 1.x's DPO `sigmoid` has none.
    public var labelSmoothing: Double
    /// γ (`simpo_gamma`, default 0.5 in `CPOConfig`): SimPO's target reward margin.
    public var simpoGamma: Double

    /// `terms` either all DPO kinds (`DPOTrainer`), or SimPO and ORPO alone with optional `sft`
    /// (their trainers); TRL has no trainer that mixes a reference loss with a reference-free one.
    public init(terms: [Term] = [Term(.sigmoid)], beta: Double = 0.1, labelSmoothing: Double = 0, simpoGamma: Double = 0.5) {
        precondition(!terms.isEmpty, "a preference loss has at least one term")
        let free = terms.filter { $0.kind == .simpo || $0.kind == .orpo }
        precondition(free.isEmpty || terms.allSatisfy { $0.kind == .sft || !$0.kind.isDPO },
                     "simpo and orpo combine with sft only, not with the DPO losses")
        self.terms = terms
        self.beta = beta
        self.labelSmoothing = labelSmoothing
        self.simpoGamma = simpoGamma
    }

    /// SimPO as TRL's `CPOTrainer` runs it (`loss_type="simpo"`): the `simpo` term plus `cpo_alpha` ·
    /// NLL. TRL's `cpo_alpha` defaults to 1.0; the SimPO paper's recipe sets it to 0.
    public static func simpo(beta: Double = 0.1, gamma: Double = 0.5, cpoAlpha: Double = 1.0, labelSmoothing: Double = 0) -> PreferenceLoss {
        PreferenceLoss(terms: [Term(.simpo)] + (cpoAlpha == 0 ? [] : [Term(.sft, weight: cpoAlpha)]),
                       beta: beta, labelSmoothing: labelSmoothing, simpoGamma: gamma)
    }

    /// ORPO as TRL's `ORPOTrainer` runs it: NLL − β · mean logσ(L).
    public static func orpo(beta: Double = 0.1) -> PreferenceLoss {
        PreferenceLoss(terms: [Term(.orpo)], beta: beta)
    }

    /// Whether the caller must supply reference log-probabilities: every `DPOTrainer` loss, whose
    /// logged rewards are β · log-ratios even when the loss itself (`sft`) does not need them.
    public var usesReference: Bool { !usesAverages }

    /// Whether an NLL term over the chosen completions' tokens is in the loss.
    public var needsChosenNLL: Bool { nllCoefficient != 0 }

    /// The NLL term's weight: `sft` terms' weights, and ORPO's own NLL.
    public var nllCoefficient: Double {
        terms.reduce(0) { $0 + ($1.kind == .sft || $1.kind == .orpo ? $1.weight : 0) }
    }

    /// SimPO and ORPO reward per-token averages without a reference (TRL's `CPOTrainer` and
    /// `ORPOTrainer` log β · āc as `rewards/chosen` and āc as `logps/chosen`); `DPOTrainer` logs
    /// β · (chosen − referenceChosen) and the sum.
    var usesAverages: Bool { terms.contains { !$0.kind.isDPO } }

    /// loss = pairScale · Σ_pairs Σ_terms weight · ℓ(pair) + tokenScale · (NLL coefficient) · Σ_pairs (−chosen).
    ///
    /// The NLL term is a mean over the chosen completion tokens, as TRL's cross-entropy over the
    /// batch is. For one batch as TRL sees it, pairScale = 1/pairs and tokenScale = 1/Σ chosenTokens;
    /// with gradient accumulation over micro-batches and ranks the caller passes the global counts,
    /// so the sums of every micro-batch's loss and gradients are those of the global batch's mean.
    /// Gradients go through the division by the token count where ℓ uses averages.
    public func evaluate(_ pairs: [PairLogProbabilities], pairScale: Double, tokenScale: Double) -> PreferenceBatchLoss {
        var loss = 0.0
        var chosenGradients = [Double](repeating: 0, count: pairs.count)
        var rejectedGradients = [Double](repeating: 0, count: pairs.count)
        var logOddsRatio = 0.0, logOdds = 0.0
        for (index, pair) in pairs.enumerated() {
            for term in terms {
                let (value, chosen, rejected) = pairLoss(term.kind, pair)
                loss += pairScale * term.weight * value
                chosenGradients[index] += pairScale * term.weight * chosen
                rejectedGradients[index] += pairScale * term.weight * rejected
            }
            if terms.contains(where: { $0.kind == .orpo }) {
                let odds = Self.logOdds(pair)
                logOdds += odds
                logOddsRatio += Logistic.logSigmoid(odds)
            }
            loss += tokenScale * nllCoefficient * -pair.chosen
            chosenGradients[index] -= tokenScale * nllCoefficient
        }
        return PreferenceBatchLoss(loss: loss, chosenGradients: chosenGradients, rejectedGradients: rejectedGradients,
                                   metrics: metrics(pairs, logOddsRatio: logOddsRatio, logOdds: logOdds))
    }

    /// One kind's ℓ and its derivatives with respect to the policy sums (chosen, rejected).
    func pairLoss(_ kind: Kind, _ pair: PairLogProbabilities) -> (value: Double, chosen: Double, rejected: Double) {
        let chosenTokens = Double(pair.chosenTokens), rejectedTokens = Double(pair.rejectedTokens)
        let logitDelta = pair.chosenLogRatio - pair.rejectedLogRatio
        let averageDelta = pair.chosenLogRatio / chosenTokens - pair.rejectedLogRatio / rejectedTokens
        switch kind {
        case .sigmoid:
            let x = beta * logitDelta
            let slope = -beta * Logistic.sigmoid(-x)
            return (Logistic.softplus(-x), slope, -slope)
        case .hinge:
            // torch.relu's gradient is 0 at the kink.
            let margin = 1 - beta * logitDelta
            return margin > 0 ? (margin, -beta, beta) : (0, 0, 0)
        case .ipo:
            let error = averageDelta - 1 / (2 * beta)
            return (error * error, 2 * error / chosenTokens, -2 * error / rejectedTokens)
        case .robust:
            let x = beta * logitDelta, ε = labelSmoothing
            let value = ((1 - ε) * Logistic.softplus(-x) - ε * Logistic.softplus(x)) / (1 - 2 * ε)
            let slope = beta * (-(1 - ε) * Logistic.sigmoid(-x) - ε * Logistic.sigmoid(x)) / (1 - 2 * ε)
            return (value, slope, -slope)
        case .sigmoidNorm:
            let x = beta * averageDelta
            let slope = -beta * Logistic.sigmoid(-x)
            return (Logistic.softplus(-x), slope / chosenTokens, -slope / rejectedTokens)
        case .sft:
            return (0, 0, 0)
        case .simpo:
            // TRL: logits = (āc − ār) − γ/β, then the label-smoothed sigmoid loss of β · logits.
            let x = beta * (pair.chosenAverage - pair.rejectedAverage) - simpoGamma, ε = labelSmoothing
            let value = (1 - ε) * Logistic.softplus(-x) + ε * Logistic.softplus(x)
            let slope = beta * (-(1 - ε) * Logistic.sigmoid(-x) + ε * Logistic.sigmoid(x))
            return (value, slope / chosenTokens, -slope / rejectedTokens)
        case .orpo:
            // ∂L/∂āc = 1 + ∂/∂āc(−log(1 − e^āc)) = −1/expm1(āc); ∂L/∂ār = 1/expm1(ār).
            let odds = Self.logOdds(pair)
            let slope = -beta * Logistic.sigmoid(-odds)   // ∂ℓ/∂L for ℓ = −β logσ(L)
            return (beta * Logistic.softplus(-odds),
                    slope * (-1 / Foundation.expm1(pair.chosenAverage)) / chosenTokens,
                    slope * (1 / Foundation.expm1(pair.rejectedAverage)) / rejectedTokens)
        }
    }

    /// ORPO's log odds ratio L = log(odds(āc) / odds(ār)), odds(p) = p / (1 − p) with p = e^ā.
    static func logOdds(_ pair: PairLogProbabilities) -> Double {
        (pair.chosenAverage - pair.rejectedAverage)
            - (Logistic.logOneMinusExp(pair.chosenAverage) - Logistic.logOneMinusExp(pair.rejectedAverage))
    }

    /// TRL's logged metrics as sums over the pairs.
    func metrics(_ pairs: [PairLogProbabilities], logOddsRatio: Double, logOdds: Double) -> [String: MetricSum] {
        var chosenRewards = 0.0, rejectedRewards = 0.0, accurate = 0.0, chosenLogps = 0.0, rejectedLogps = 0.0
        for pair in pairs {
            let chosenReward = beta * (usesAverages ? pair.chosenAverage : pair.chosenLogRatio)
            let rejectedReward = beta * (usesAverages ? pair.rejectedAverage : pair.rejectedLogRatio)
            chosenRewards += chosenReward
            rejectedRewards += rejectedReward
            accurate += chosenReward > rejectedReward ? 1 : 0
            chosenLogps += usesAverages ? pair.chosenAverage : pair.chosen
            rejectedLogps += usesAverages ? pair.rejectedAverage : pair.rejected
        }
        let count = Double(pairs.count)
        var metrics = [
            "rewards/chosen": MetricSum(sum: chosenRewards, count: count),
            "rewards/rejected": MetricSum(sum: rejectedRewards, count: count),
            "rewards/margins": MetricSum(sum: chosenRewards - rejectedRewards, count: count),
            "rewards/accuracies": MetricSum(sum: accurate, count: count),
            "logps/chosen": MetricSum(sum: chosenLogps, count: count),
            "logps/rejected": MetricSum(sum: rejectedLogps, count: count),
        ]
        if needsChosenNLL {
            metrics["nll_loss"] = MetricSum(sum: pairs.reduce(0) { $0 - $1.chosen },
                                            count: Double(pairs.reduce(0) { $0 + $1.chosenTokens }))
        }
        if terms.contains(where: { $0.kind == .orpo }) {
            metrics["log_odds_ratio"] = MetricSum(sum: logOddsRatio, count: count)
            metrics["log_odds_chosen"] = MetricSum(sum: logOdds, count: count)
        }
        return metrics
    }
}

/// The logistic function and its logs in forms that stay finite and accurate for large |x|.
enum Logistic {
    /// σ(x) = 1 / (1 + e^−x), through e^−|x| so neither branch overflows.
    static func sigmoid(_ x: Double) -> Double {
        if x >= 0 { return 1 / (1 + Foundation.exp(-x)) }
        let e = Foundation.exp(x)
        return e / (1 + e)
    }

    /// softplus(x) = log(1 + eˣ) = max(x, 0) + log1p(e^−|x|); −logσ(x) = softplus(−x).
    static func softplus(_ x: Double) -> Double {
        Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x)))
    }

    /// logσ(x) = −softplus(−x).
    static func logSigmoid(_ x: Double) -> Double { -softplus(-x) }

    /// log(1 − eˣ) for x < 0, branching at −ln 2 as TRL's `log1mexp` does to avoid cancellation.
    static func logOneMinusExp(_ x: Double) -> Double {
        x < -M_LN2 ? Foundation.log1p(-Foundation.exp(x)) : Foundation.log(-Foundation.expm1(x))
    }
}
