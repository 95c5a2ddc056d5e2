import Tensors

/// DPO and its family (`PreferenceLoss`: sigmoid, hinge, IPO, robust, sigmoid_norm, SimPO, ORPO,
/// and the NLL term of RPO) as a training objective: each micro-batch's pairs
/// (`MicroBatch.preferenceSequences`, a chosen and a rejected sequence each) are read as the
/// policy's Σ log p over each answer's tokens, with the reference's from the cache, and the loss's
/// gradient with respect to each sum goes to every answer token.
///
/// The loss is a mean over the global batch's pairs; the NLL term a mean over its chosen
/// answers' tokens (the auxiliary normalization), so gradient accumulation over micro-batches and
/// ranks gives TRL's figures for the global batch.
///
/// Beside TRL's metrics it reports `policy/accuracies`: the share of pairs whose chosen answer
/// the policy itself finds likelier than the rejected one (Σ log p, no reference) — the model's
/// own preference accuracy, which `rewards/accuracies` (a log-ratio against the reference, 0 at
/// the start) is not.
public struct PreferenceObjective: TrainingObjective {
    public let loss: PreferenceLoss
    public let metricNames: [String]

    public init(loss: PreferenceLoss) {
        self.loss = loss
        // The metrics a batch reports (the same for every batch of these settings).
        let probe = PairLogProbabilities(chosen: -1, rejected: -2, chosenTokens: 1, rejectedTokens: 1, referenceChosen: -1, referenceRejected: -1)
        metricNames = (loss.evaluate([probe], pairScale: 1, tokenScale: 1).metrics.keys + [Self.policyAccuracy]).sorted()
    }

    static let policyAccuracy = "policy/accuracies"

    public var name: String { "preference" }

    public func normalization(of batch: MicroBatch) -> Double { pairCount(batch) }

    public func auxiliaryNormalizations(of batch: MicroBatch) -> [Double] {
        guard loss.needsChosenNLL else { return [] }
        return [Double(batch.preferenceSequences.reduce(0) { total, sequence in
            total + (sequence.role == .chosen ? sequence.span.reduce(0) { $0 + (batch.counts($1) ? 1 : 0) } : 0)
        })]
    }

    public func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput {
        let batch = input.batch
        let pairs = PairedSequences(batch)
        let logProbabilities = pairs.pairs.map { pair in
            let chosen = sequenceSum(pair.chosen, input), rejected = sequenceSum(pair.rejected, input)
            return PairLogProbabilities(chosen: chosen.sum, rejected: rejected.sum, chosenTokens: chosen.count, rejectedTokens: rejected.count,
                                        referenceChosen: pair.chosen.reference, referenceRejected: pair.rejected.reference)
        }
        let result = loss.evaluate(logProbabilities, pairScale: input.scale, tokenScale: input.auxiliaryScales.first ?? 0)
        let gradients = gradient.logProbabilities
        gradients.update(repeating: 0)
        for (index, pair) in pairs.pairs.enumerated() {
            for (sequence, value) in [(pair.chosen, result.chosenGradients[index]), (pair.rejected, result.rejectedGradients[index])] {
                for position in sequence.span where batch.counts(position) { gradients[position] = Float(value) }
            }
        }
        var metrics = result.metrics
        metrics[Self.policyAccuracy] = MetricSum(sum: Double(logProbabilities.filter { $0.chosen > $0.rejected }.count),
                                                 count: Double(logProbabilities.count))
        // In units of the primary normalization (pairs), as the trainer divides by it.
        return ObjectiveOutput(lossSum: input.scale > 0 ? result.loss / input.scale : 0, metrics: metrics)
    }
}

/// A reward model's objective: Bradley-Terry over each pair's scalar scores, read at the last
/// token of the chosen and of the rejected sequence (as transformers' sequence classification
/// pools the last token), with the optional margin and reward centering (`BradleyTerryLoss`).
/// The loss is a mean over the global batch's pairs.
public struct RewardObjective: TrainingObjective {
    public let loss: BradleyTerryLoss
    public let metricNames: [String]

    public init(loss: BradleyTerryLoss) {
        self.loss = loss
        metricNames = loss.evaluate([BradleyTerryLoss.ScorePair(chosen: 1, rejected: 0)], pairScale: 1).metrics.keys.sorted()
    }

    public var name: String { "reward" }

    public func normalization(of batch: MicroBatch) -> Double { pairCount(batch) }

    public func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput {
        let pairs = PairedSequences(input.batch)
        let scores = pairs.pairs.map { pair in
            BradleyTerryLoss.ScorePair(chosen: Double(input.score(atLastTokenOf: pair.chosen.span)),
                                       rejected: Double(input.score(atLastTokenOf: pair.rejected.span)), margin: pair.chosen.margin)
        }
        let result = loss.evaluate(scores, pairScale: input.scale)
        for (index, pair) in pairs.pairs.enumerated() {
            gradient.scores[(pair.chosen.span.upperBound - 1) * input.labelCount] = Float(result.chosenGradients[index])
            gradient.scores[(pair.rejected.span.upperBound - 1) * input.labelCount] = Float(result.rejectedGradients[index])
        }
        return ObjectiveOutput(lossSum: input.scale > 0 ? result.loss / input.scale : 0, metrics: result.metrics)
    }
}

/// A micro-batch's preference sequences as pairs (each pair's chosen and rejected lie in the same
/// micro-batch, `PreferencePackedRows` packs them into one row).
struct PairedSequences {
    var pairs: [(chosen: PreferenceSequence, rejected: PreferenceSequence)] = []

    init(_ batch: MicroBatch) {
        var chosen: [Int: PreferenceSequence] = [:]
        for sequence in batch.preferenceSequences {
            switch sequence.role {
            case .chosen: chosen[sequence.pair] = sequence
            case .desirable, .undesirable:
                preconditionFailure("an unpaired sample in a pair objective's batch")
            case .rejected:
                guard let partner = chosen.removeValue(forKey: sequence.pair) else {
                    preconditionFailure("pair \(sequence.pair)'s rejected sequence comes before its chosen one")
                }
                pairs.append((partner, sequence))
            }
        }
        precondition(chosen.isEmpty, "pairs \(chosen.keys.sorted()) have no rejected sequence in the micro-batch")
    }
}

/// The pairs in `batch` (its chosen sequences).
func pairCount(_ batch: MicroBatch) -> Double {
    Double(batch.preferenceSequences.reduce(0) { $0 + ($1.role == .chosen ? 1 : 0) })
}

/// Σ log p over a sequence's counted targets (its answer's tokens), summed in Double in order, and
/// their count.
func sequenceSum(_ sequence: PreferenceSequence, _ input: ObjectiveInput) -> (sum: Double, count: Int) {
    var sum = 0.0, count = 0
    for position in sequence.span where input.batch.counts(position) {
        sum += Double(input.tokenLogProbabilities[position])
        count += 1
    }
    return (sum, count)
}
