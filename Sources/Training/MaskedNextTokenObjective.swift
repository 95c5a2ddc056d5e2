/// Next-token loss over chosen tokens with a weight each (`MicroBatch.lossWeights`, 0 to leave a
/// token out, e.g. a prompt), as supervised fine-tuning trains on answers only. Two
/// normalizations, as LlamaFactory and TRL offer them:
///
/// - `.tokens`: every supervised token of the global batch weighs the same
///   (loss = Σ wₜ·(−log pₜ) / Σ wₜ);
/// - `.sequences`: each sequence's weighted mean first, then the mean over the global batch's
///   sequences that have any supervised token (short answers weigh as much as long ones):
///   loss = Σₛ [Σₜ∈ₛ wₜ·(−log pₜ) / Σₜ∈ₛ wₜ] / S.
///
/// Metric: `supervised_tokens`, supervised tokens (Σ w) per sequence.
public struct MaskedNextTokenObjective: TrainingObjective {
    public enum Normalization: String, Sendable, CaseIterable {
        case tokens, sequences
    }

    public let normalization: Normalization

    public init(normalization: Normalization = .tokens) {
        self.normalization = normalization
    }

    public var name: String { "masked_next_token" }
    public var metricNames: [String] { ["supervised_tokens"] }

    public func normalization(of batch: MicroBatch) -> Double {
        switch normalization {
        case .tokens:
            return (0..<batch.targets.count).reduce(0) { $0 + weight(batch, $1) }
        case .sequences:
            return Double(sequenceWeights(batch).filter { $0.weight > 0 }.count)
        }
    }

    public func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput {
        let (batch, gradient) = (input.batch, gradient.logProbabilities)
        var lossSum = 0.0, supervised = 0.0
        let sequences = sequenceWeights(batch)
        for (span, total) in sequences {
            // Per token: ∂(scale · lossSum)/∂log p = −w · scale (÷ the sequence's weight).
            let divisor = normalization == .sequences ? total : 1
            var sequenceLoss = 0.0
            for index in span {
                let w = weight(batch, index)
                gradient[index] = total > 0 ? Float(-w * input.scale / divisor) : 0
                sequenceLoss += w * -Double(input.tokenLogProbabilities[index])
            }
            guard total > 0 else { continue }
            lossSum += sequenceLoss / divisor
            supervised += total
        }
        let counted = Double(sequences.filter { $0.weight > 0 }.count)
        return ObjectiveOutput(lossSum: lossSum, metrics: ["supervised_tokens": MetricSum(sum: supervised, count: counted)])
    }

    /// Position `index`'s weight: 0 without a counted target, else its loss weight (1 by default).
    private func weight(_ batch: MicroBatch, _ index: Int) -> Double {
        guard batch.counts(index) else { return 0 }
        return Double(batch.lossWeights?[index] ?? 1)
    }

    /// Each sequence of the micro-batch (`MicroBatch.sequenceSpans`) with its total weight.
    private func sequenceWeights(_ batch: MicroBatch) -> [(span: Range<Int>, weight: Double)] {
        batch.sequenceSpans.map { span in (span, span.reduce(0) { $0 + weight(batch, $1) }) }
    }
}
