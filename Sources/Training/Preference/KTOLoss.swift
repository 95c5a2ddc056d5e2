/// KTO's loss on unpaired sequences, as TRL's `KTOTrainer` (`loss_type="kto"`): with the
/// policy/reference log-ratio ρ = policy − reference of a sequence's completion sum,
/// z₀ = max(0, `klEstimate`) held constant, β = `beta`,
///
///     desirable:   ℓ = desirable_weight   · (1 − σ(β(ρ − z₀)))
///     undesirable: ℓ = undesirable_weight · (1 − σ(β(z₀ − ρ)))
///
/// averaged over all the batch's sequences (TRL's `losses.nanmean()`). The KL estimate is
/// computed elsewhere: the mean over the global batch of policy − reference log-prob sums of
/// mismatched prompt/completion pairs, which TRL clamps at 0 (`.clamp(min=0)`) after gathering
/// it across processes and detaches.
public struct KTOLoss: Sendable {
    /// β (`beta`, default 0.1).
    public var beta: Double
    /// `desirable_weight` and `undesirable_weight` (default 1): rebalance unequal counts.
    public var desirableWeight: Double
    public var undesirableWeight: Double

    public init(beta: Double = 0.1, desirableWeight: Double = 1, undesirableWeight: Double = 1) {
        self.beta = beta
        self.desirableWeight = desirableWeight
        self.undesirableWeight = undesirableWeight
    }

    /// One sequence's completion log-prob sums and its label.
    public struct LabeledSequence: Sendable, Equatable {
        public var policy: Double
        public var reference: Double
        public var desirable: Bool

        public init(policy: Double, reference: Double, desirable: Bool) {
            self.policy = policy
            self.reference = reference
            self.desirable = desirable
        }
    }

    /// What `evaluate` returns.
    public struct BatchLoss: Sendable {
        public var loss: Double
        /// ∂loss/∂policy per sequence.
        public var gradients: [Double]
        /// `kl` (z₀ after the clamp, count 1), `rewards/chosen` and `logps/chosen` over the
        /// desirable sequences, `rewards/rejected` and `logps/rejected` over the undesirable ones
        /// (count 0 when there are none; TRL then logs nothing). TRL's `rewards/margins` is the
        /// difference of the two reward means, which the caller forms from the step's sums.
        public var metrics: [String: MetricSum]
    }

    /// loss = scale · Σ_sequences ℓ; scale = 1/sequences for one batch as TRL sees it.
    public func evaluate(sequences: [LabeledSequence], klEstimate: Double, scale: Double) -> BatchLoss {
        let z = Swift.max(klEstimate, 0)
        var loss = 0.0, gradients: [Double] = []
        var chosenRewards = 0.0, chosenLogps = 0.0, chosenCount = 0.0
        var rejectedRewards = 0.0, rejectedLogps = 0.0, rejectedCount = 0.0
        for sequence in sequences {
            let ratio = sequence.policy - sequence.reference
            // 1 − σ(x) = σ(−x), and dσ(x)/dx = σ(x)σ(−x).
            let x = sequence.desirable ? beta * (ratio - z) : beta * (z - ratio)
            let weight = sequence.desirable ? desirableWeight : undesirableWeight
            let slope = Logistic.sigmoid(x) * Logistic.sigmoid(-x) * beta
            loss += scale * weight * Logistic.sigmoid(-x)
            gradients.append(scale * weight * (sequence.desirable ? -slope : slope))
            if sequence.desirable {
                chosenRewards += beta * ratio
                chosenLogps += sequence.policy
                chosenCount += 1
            } else {
                rejectedRewards += beta * ratio
                rejectedLogps += sequence.policy
                rejectedCount += 1
            }
        }
        return BatchLoss(loss: loss, gradients: gradients,
                         metrics: ["kl": MetricSum(sum: z, count: 1),
                                   "rewards/chosen": MetricSum(sum: chosenRewards, count: chosenCount),
                                   "logps/chosen": MetricSum(sum: chosenLogps, count: chosenCount),
                                   "rewards/rejected": MetricSum(sum: rejectedRewards, count: rejectedCount),
                                   "logps/rejected": MetricSum(sum: rejectedLogps, count: rejectedCount)])
    }
}
