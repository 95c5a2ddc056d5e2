import Foundation
import Testing
@testable import Training

/// The preference losses against TRL's own trainer code (`preference_losses.json`, written by
/// tools/golden/make_preference_fixture.py), and their gradients against central differences.
///
/// Tolerance: |actual − expected| ≤ 1e-6 · max(1, |expected|) — absolute for values up to 1 in
/// size, relative above (the large-magnitude cases have losses near 20–45).
@Suite struct PreferenceLossTests {
    static let tolerance = 1e-6

    struct Fixture: Decodable {
        struct Pair: Decodable {
            var chosen, rejected: Double
            var chosenTokens, rejectedTokens: Int
            var referenceChosen, referenceRejected: Double
        }
        struct Settings: Decodable {
            var lossTypes: [String]
            var lossWeights: [Double]?
            var beta: Double
            var labelSmoothing: Double?
            var simpoGamma: Double?
            var cpoAlpha: Double?
        }
        struct PreferenceCase: Decodable {
            var name, trainer: String
            var settings: Settings
            var pairs: [Pair]
            var loss: Double
            var chosenGradients, rejectedGradients: [Double]
            var metrics: [String: Double]
        }
        struct KTOSettings: Decodable { var beta, desirableWeight, undesirableWeight: Double }
        struct KTOSequence: Decodable { var policy, reference: Double; var desirable: Bool }
        struct KTOCase: Decodable {
            var name: String
            var settings: KTOSettings
            var sequences: [KTOSequence]
            var klEstimate, loss: Double
            var gradients: [Double]
            var metrics: [String: Double]
        }
        struct ScorePair: Decodable { var chosen, rejected, margin: Double }
        struct RewardCase: Decodable {
            var name: String
            var centerRewardsCoefficient: Double?
            var pairs: [ScorePair]
            var loss: Double
            var chosenGradients, rejectedGradients: [Double]
            var metrics: [String: Double]
        }
        var versions: [String: String]
        var preference: [PreferenceCase]
        var kto: [KTOCase]
        var reward: [RewardCase]
    }

    static let fixture: Fixture = {
        guard let url = Bundle.module.url(forResource: "preference_losses", withExtension: "json", subdirectory: "Fixtures"),
              let data = try? Data(contentsOf: url), let fixture = try? JSONDecoder().decode(Fixture.self, from: data)
        else { fatalError("Fixtures/preference_losses.json is missing or does not decode") }
        return fixture
    }()

    /// The loss TRL ran for a case, by the trainer and settings it recorded.
    static func loss(for settings: Fixture.Settings, trainer: String) -> PreferenceLoss {
        switch trainer {
        case "CPOTrainer":
            return .simpo(beta: settings.beta, gamma: settings.simpoGamma ?? 0.5, cpoAlpha: settings.cpoAlpha ?? 1,
                          labelSmoothing: settings.labelSmoothing ?? 0)
        case "ORPOTrainer":
            return .orpo(beta: settings.beta)
        default:
            let weights = settings.lossWeights ?? settings.lossTypes.map { _ in 1 }
            let terms = zip(settings.lossTypes, weights).map { name, weight in
                PreferenceLoss.Term(PreferenceLoss.Kind(rawValue: name)!, weight: weight)
            }
            return PreferenceLoss(terms: terms, beta: settings.beta, labelSmoothing: settings.labelSmoothing ?? 0)
        }
    }

    static func pairs(_ recorded: [Fixture.Pair]) -> [PairLogProbabilities] {
        recorded.map {
            PairLogProbabilities(chosen: $0.chosen, rejected: $0.rejected, chosenTokens: $0.chosenTokens,
                                 rejectedTokens: $0.rejectedTokens, referenceChosen: $0.referenceChosen,
                                 referenceRejected: $0.referenceRejected)
        }
    }

    /// One batch as TRL sees it: the mean over pairs, the NLL a mean over all chosen tokens.
    static func evaluate(_ loss: PreferenceLoss, _ pairs: [PairLogProbabilities]) -> PreferenceBatchLoss {
        loss.evaluate(pairs, pairScale: 1 / Double(pairs.count),
                      tokenScale: 1 / Double(pairs.reduce(0) { $0 + $1.chosenTokens }))
    }

    @Test func fixtureComesFromTRL() {
        #expect(Self.fixture.versions["trl"]?.hasPrefix("1.") == true)
        #expect(Self.fixture.preference.count >= 15 && Self.fixture.kto.count >= 3 && Self.fixture.reward.count >= 3)
    }

    @Test(arguments: fixture.preference.map(\.name))
    func preferenceMatchesTRL(_ name: String) throws {
        let recorded = try #require(Self.fixture.preference.first { $0.name == name })
        let result = Self.evaluate(Self.loss(for: recorded.settings, trainer: recorded.trainer), Self.pairs(recorded.pairs))
        expectWithin([result.loss], [recorded.loss], "\(name) loss")
        expectWithin(result.chosenGradients, recorded.chosenGradients, "\(name) ∂/∂chosen")
        expectWithin(result.rejectedGradients, recorded.rejectedGradients, "\(name) ∂/∂rejected")
        expectMetrics(result.metrics, recorded.metrics, name)
    }

    @Test(arguments: fixture.kto.map(\.name))
    func ktoMatchesTRL(_ name: String) throws {
        let recorded = try #require(Self.fixture.kto.first { $0.name == name })
        let loss = KTOLoss(beta: recorded.settings.beta, desirableWeight: recorded.settings.desirableWeight,
                           undesirableWeight: recorded.settings.undesirableWeight)
        let sequences = recorded.sequences.map { KTOLoss.LabeledSequence(policy: $0.policy, reference: $0.reference, desirable: $0.desirable) }
        let result = loss.evaluate(sequences: sequences, klEstimate: recorded.klEstimate, scale: 1 / Double(sequences.count))
        expectWithin([result.loss], [recorded.loss], "\(name) loss")
        expectWithin(result.gradients, recorded.gradients, "\(name) ∂/∂policy")
        // TRL logs the reward margin as the difference of the two means, and nothing for an absent side.
        var metrics = result.metrics.filter { $0.value.count > 0 }
        if let chosen = metrics["rewards/chosen"], let rejected = metrics["rewards/rejected"] {
            metrics["rewards/margins"] = MetricSum(sum: chosen.mean - rejected.mean, count: 1)
        }
        expectMetrics(metrics, recorded.metrics, name)
    }

    @Test(arguments: fixture.reward.map(\.name))
    func bradleyTerryMatchesTRL(_ name: String) throws {
        let recorded = try #require(Self.fixture.reward.first { $0.name == name })
        let pairs = recorded.pairs.map { BradleyTerryLoss.ScorePair(chosen: $0.chosen, rejected: $0.rejected, margin: $0.margin) }
        let result = BradleyTerryLoss(centerRewardsCoefficient: recorded.centerRewardsCoefficient)
            .evaluate(pairs, pairScale: 1 / Double(pairs.count))
        expectWithin([result.loss], [recorded.loss], "\(name) loss")
        expectWithin(result.chosenGradients, recorded.chosenGradients, "\(name) ∂/∂r_c")
        expectWithin(result.rejectedGradients, recorded.rejectedGradients, "\(name) ∂/∂r_r")
        var metrics = result.metrics
        metrics["min_reward"] = MetricSum(sum: result.minimumReward, count: 1)
        metrics["max_reward"] = MetricSum(sum: result.maximumReward, count: 1)
        expectMetrics(metrics, recorded.metrics, name)
    }

    /// Central differences of `evaluate`'s own loss against its gradients, for every kind (the
    /// fixture's cases of ordinary magnitude: one or more per kind, the NLL term included).
    @Test(arguments: fixture.preference.filter { !$0.name.hasSuffix("_large") }.map(\.name))
    func preferenceGradientsMatchFiniteDifferences(_ name: String) throws {
        let recorded = try #require(Self.fixture.preference.first { $0.name == name })
        let loss = Self.loss(for: recorded.settings, trainer: recorded.trainer)
        let pairs = Self.pairs(recorded.pairs)
        let result = Self.evaluate(loss, pairs)
        let h = 1e-5
        func difference(_ index: Int, _ side: WritableKeyPath<PairLogProbabilities, Double>) -> Double {
            var plus = pairs, minus = pairs
            plus[index][keyPath: side] += h
            minus[index][keyPath: side] -= h
            return (Self.evaluate(loss, plus).loss - Self.evaluate(loss, minus).loss) / (2 * h)
        }
        expectWithin(result.chosenGradients, pairs.indices.map { difference($0, \.chosen) }, "\(name) ∂/∂chosen vs differences")
        expectWithin(result.rejectedGradients, pairs.indices.map { difference($0, \.rejected) }, "\(name) ∂/∂rejected vs differences")
    }

    @Test func ktoAndBradleyTerryGradientsMatchFiniteDifferences() {
        let h = 1e-5
        for recorded in Self.fixture.kto where !recorded.name.hasSuffix("_large") {
            let loss = KTOLoss(beta: recorded.settings.beta, desirableWeight: recorded.settings.desirableWeight,
                               undesirableWeight: recorded.settings.undesirableWeight)
            let sequences = recorded.sequences.map { KTOLoss.LabeledSequence(policy: $0.policy, reference: $0.reference, desirable: $0.desirable) }
            func value(_ sequences: [KTOLoss.LabeledSequence]) -> Double {
                loss.evaluate(sequences: sequences, klEstimate: recorded.klEstimate, scale: 0.25).loss
            }
            let differences = sequences.indices.map { index in
                var plus = sequences, minus = sequences
                plus[index].policy += h
                minus[index].policy -= h
                return (value(plus) - value(minus)) / (2 * h)
            }
            let result = loss.evaluate(sequences: sequences, klEstimate: recorded.klEstimate, scale: 0.25)
            expectWithin(result.gradients, differences, "\(recorded.name) ∂/∂policy vs differences")
        }
        for recorded in Self.fixture.reward {
            let loss = BradleyTerryLoss(centerRewardsCoefficient: recorded.centerRewardsCoefficient)
            let pairs = recorded.pairs.map { BradleyTerryLoss.ScorePair(chosen: $0.chosen, rejected: $0.rejected, margin: $0.margin) }
            func difference(_ index: Int, _ side: WritableKeyPath<BradleyTerryLoss.ScorePair, Double>) -> Double {
                var plus = pairs, minus = pairs
                plus[index][keyPath: side] += h
                minus[index][keyPath: side] -= h
                return (loss.evaluate(plus, pairScale: 0.5).loss - loss.evaluate(minus, pairScale: 0.5).loss) / (2 * h)
            }
            let result = loss.evaluate(pairs, pairScale: 0.5)
            expectWithin(result.chosenGradients, pairs.indices.map { difference($0, \.chosen) }, "\(recorded.name) ∂/∂r_c vs differences")
            expectWithin(result.rejectedGradients, pairs.indices.map { difference($0, \.rejected) }, "\(recorded.name) ∂/∂r_r vs differences")
        }
    }

    /// A list of kinds with weights is the weighted sum of each kind alone.
    @Test func weightedListIsTheWeightedSumOfItsKinds() throws {
        let recorded = try #require(Self.fixture.preference.first { $0.name == "weighted_list" })
        let combined = Self.loss(for: recorded.settings, trainer: recorded.trainer)
        let pairs = Self.pairs(recorded.pairs)
        let whole = Self.evaluate(combined, pairs)
        var loss = 0.0
        var chosen = [Double](repeating: 0, count: pairs.count), rejected = chosen
        for term in combined.terms {
            var single = combined
            single.terms = [PreferenceLoss.Term(term.kind)]
            let part = Self.evaluate(single, pairs)
            loss += term.weight * part.loss
            for index in pairs.indices {
                chosen[index] += term.weight * part.chosenGradients[index]
                rejected[index] += term.weight * part.rejectedGradients[index]
            }
        }
        #expect(Set(combined.terms.map(\.kind)).count == 6)
        expectWithin([whole.loss], [loss], "weighted loss", tolerance: 1e-12)
        expectWithin(whole.chosenGradients, chosen, "weighted ∂/∂chosen", tolerance: 1e-12)
        expectWithin(whole.rejectedGradients, rejected, "weighted ∂/∂rejected", tolerance: 1e-12)
    }

    /// Splitting a batch into micro-batches with the global scales gives the whole batch's loss,
    /// gradients and metric sums (what gradient accumulation relies on).
    @Test func microBatchesWithGlobalScalesAddUpToTheBatch() throws {
        let recorded = try #require(Self.fixture.preference.first { $0.name == "simpo_cpo_alpha" })
        let loss = Self.loss(for: recorded.settings, trainer: recorded.trainer)
        let pairs = Self.pairs(recorded.pairs)
        let whole = Self.evaluate(loss, pairs)
        let pairScale = 1 / Double(pairs.count), tokenScale = 1 / Double(pairs.reduce(0) { $0 + $1.chosenTokens })
        let first = loss.evaluate(Array(pairs[..<2]), pairScale: pairScale, tokenScale: tokenScale)
        let second = loss.evaluate(Array(pairs[2...]), pairScale: pairScale, tokenScale: tokenScale)
        expectWithin([first.loss + second.loss], [whole.loss], "accumulated loss", tolerance: 1e-12)
        expectWithin(first.chosenGradients + second.chosenGradients, whole.chosenGradients, "accumulated ∂/∂chosen", tolerance: 1e-12)
        for (name, metric) in whole.metrics {
            let added = try #require(first.metrics[name]) + (try #require(second.metrics[name]))
            expectWithin([added.sum, added.count], [metric.sum, metric.count], "accumulated \(name)", tolerance: 1e-12)
        }
    }

    @Test func settingsFollowTheTrainers() {
        let dpo = PreferenceLoss()
        #expect(dpo.terms == [PreferenceLoss.Term(.sigmoid)] && dpo.beta == 0.1 && dpo.labelSmoothing == 0)
        #expect(dpo.usesReference && !dpo.needsChosenNLL)
        let rpo = PreferenceLoss(terms: [.init(.sigmoid), .init(.sft, weight: 0.5)])
        #expect(rpo.usesReference && rpo.needsChosenNLL && rpo.nllCoefficient == 0.5)
        let simpo = PreferenceLoss.simpo()
        #expect(!simpo.usesReference && simpo.needsChosenNLL && simpo.simpoGamma == 0.5)
        #expect(!PreferenceLoss.simpo(cpoAlpha: 0).needsChosenNLL)
        let orpo = PreferenceLoss.orpo()
        #expect(!orpo.usesReference && orpo.nllCoefficient == 1)
    }

    /// Logistic pieces stay finite and exact where a naive formula overflows or cancels.
    @Test func logisticIsStableForLargeArguments() {
        #expect(Logistic.softplus(800) == 800)
        #expect(Logistic.softplus(-800) == 0)
        #expect(Logistic.sigmoid(-800) == 0 && Logistic.sigmoid(800) == 1)
        #expect(abs(Logistic.logSigmoid(-40) + 40) < 1e-15)
        #expect(abs(Logistic.logOneMinusExp(-1e-12) - log(1e-12)) < 1e-9)
    }

    // MARK: - Comparison

    /// Prints the largest error scaled by max(1, |expected|) (the logs keep every measured figure)
    /// and records one issue per array when any element is beyond `tolerance`, naming the count and
    /// the worst element (never an element-by-element diff).
    func expectWithin(_ actual: [Double], _ expected: [Double], _ label: String, tolerance: Double = tolerance,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        guard actual.count == expected.count else {
            Issue.record(Comment(rawValue: "\(label): \(actual.count) values vs \(expected.count) expected"), sourceLocation: sourceLocation)
            return
        }
        var failures = 0, worst = 0.0, worstIndex = 0
        for (index, (a, e)) in zip(actual, expected).enumerated() {
            let error = abs(a - e) / max(1, abs(e))
            if !(error <= tolerance) { failures += 1 }
            if !(error <= worst) { worst = error.isNaN ? .infinity : error; worstIndex = index }
        }
        print("\(label): max scaled error \(worst) (tolerance \(tolerance))")
        if failures > 0 {
            let message = "\(label): \(failures) of \(actual.count) beyond \(tolerance); worst at \(worstIndex): "
                + "\(actual[worstIndex]) vs \(expected[worstIndex]) expected (scaled error \(worst))"
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        }
    }

    /// Every metric TRL logged for the case, as this side's sum / count.
    func expectMetrics(_ actual: [String: MetricSum], _ expected: [String: Double], _ name: String,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
            guard let metric = actual[key] else {
                Issue.record(Comment(rawValue: "\(name): no metric \(key)"), sourceLocation: sourceLocation)
                continue
            }
            expectWithin([metric.mean], [value], "\(name) \(key)", sourceLocation: sourceLocation)
        }
    }
}
