/// A reward model's Bradley-Terry loss, as TRL's `RewardTrainer.compute_loss`: per pair of scalar
/// scores r_c (chosen) and r_r (rejected) with an optional dataset `margin` m,
///
///     ℓ = −logσ(r_c − r_r − m) + λ · (r_c + r_r)²,   λ = `center_rewards_coefficient`
///
/// averaged over the pairs (the centering term is TRL's `mean((r_c + r_r)²)`; without a
/// coefficient it is absent, and a pair without a margin has m = 0).
public struct BradleyTerryLoss: Sendable {
    /// λ (`center_rewards_coefficient`, default `None`; the paper it comes from recommends 0.01).
    public var centerRewardsCoefficient: Double?

    public init(centerRewardsCoefficient: Double? = nil) {
        self.centerRewardsCoefficient = centerRewardsCoefficient
    }

    /// The two scores of one preference pair and its margin (0 when the dataset has none).
    public struct ScorePair: Sendable, Equatable {
        public var chosen: Double
        public var rejected: Double
        public var margin: Double

        public init(chosen: Double, rejected: Double, margin: Double = 0) {
            self.chosen = chosen
            self.rejected = rejected
            self.margin = margin
        }
    }

    /// What `evaluate` returns.
    public struct BatchLoss: Sendable {
        public var loss: Double
        /// ∂loss/∂r_c and ∂loss/∂r_r per pair.
        public var chosenGradients: [Double]
        public var rejectedGradients: [Double]
        /// TRL's `accuracy` (r_c > r_r) and `margin` (mean r_c − r_r, without the dataset margin)
        /// over pairs, and `mean_reward` over both scores of every pair.
        public var metrics: [String: MetricSum]
        /// TRL's `min_reward` and `max_reward`: extremes, which do not add up as sums do (the
        /// caller takes the min and max over micro-batches and ranks).
        public var minimumReward: Double
        public var maximumReward: Double
    }

    /// loss = pairScale · Σ_pairs ℓ(pair); pairScale = 1/pairs for one batch as TRL sees it.
    public func evaluate(_ pairs: [ScorePair], pairScale: Double) -> BatchLoss {
        let center = centerRewardsCoefficient ?? 0
        var loss = 0.0, accurate = 0.0, margins = 0.0, rewards = 0.0
        var chosenGradients: [Double] = [], rejectedGradients: [Double] = []
        for pair in pairs {
            let difference = pair.chosen - pair.rejected - pair.margin
            let total = pair.chosen + pair.rejected
            loss += pairScale * (Logistic.softplus(-difference) + center * total * total)
            // ∂softplus(−d)/∂d = −σ(−d); ∂(r_c + r_r)²/∂r = 2(r_c + r_r).
            let pull = Logistic.sigmoid(-difference)
            chosenGradients.append(pairScale * (-pull + 2 * center * total))
            rejectedGradients.append(pairScale * (pull + 2 * center * total))
            accurate += pair.chosen > pair.rejected ? 1 : 0
            margins += pair.chosen - pair.rejected
            rewards += total
        }
        let count = Double(pairs.count)
        let scores = pairs.flatMap { [$0.chosen, $0.rejected] }
        return BatchLoss(loss: loss, chosenGradients: chosenGradients, rejectedGradients: rejectedGradients,
                         metrics: ["accuracy": MetricSum(sum: accurate, count: count),
                                   "margin": MetricSum(sum: margins, count: count),
                                   "mean_reward": MetricSum(sum: rewards, count: 2 * count)],
                         minimumReward: scores.min() ?? 0, maximumReward: scores.max() ?? 0)
    }
}
