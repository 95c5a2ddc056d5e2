/// Pretraining's objective: the mean of −log p(next token) over every counted target of the
/// global batch (targets of −100 do not count).
///
///     loss = −Σ log p / N,  N = counted targets of the global batch;  ∂loss/∂log p = −1/N
public struct NextTokenObjective: TrainingObjective {
    public init() {}

    public var name: String { "next_token" }

    public func normalization(of batch: MicroBatch) -> Double { Double(batch.targetCount) }

    public func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput {
        let gradient = gradient.logProbabilities
        // −Float(1/N): the same float the loss kernels scaled by before objectives existed, so
        // pretraining stays bitwise what it was.
        let weight = -Float(input.scale)
        for index in gradient.indices { gradient[index] = input.batch.counts(index) ? weight : 0 }
        return ObjectiveOutput(lossSum: input.crossEntropy.lossSum)
    }
}
