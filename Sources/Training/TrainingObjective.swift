import Model
import Parallel
import Runtime
import Tensors

/// What a training mode optimizes (DESIGN §7): a small type that turns one micro-batch's
/// per-token log-probabilities (or, for a model with a scalar head, its per-token scores) into a
/// loss and its gradient with respect to them. The trainer
/// owns everything else — the loop, the mesh, ZeRO, checkpoints, metrics — so a mode adds its
/// objective, its data and its metrics, nothing more.
///
/// One step, on every rank: the trainer sums `normalization(of:)` over the global batch (every
/// micro-batch of every data-parallel rank), then, on the rank that holds the model's head, for
/// each micro-batch: forward → `evaluate` (loss sum, and ∂(loss sum / global normalization)/∂log p
/// per token) → backward from those gradients. The step's loss is the global Σ `lossSum` over
/// the global normalization, so the gradients are those of that loss.
public protocol TrainingObjective: Sendable {
    /// The objective's name in logs and configs (`next_token`).
    var name: String { get }
    /// The metrics `evaluate` reports, the same on every rank and every micro-batch (ranks that
    /// hold no head report zeros for them).
    var metricNames: [String] { get }
    /// What this micro-batch adds to the step's normalization: its supervised tokens, its
    /// sequences, or whatever the loss is a mean over.
    func normalization(of batch: MicroBatch) -> Double
    /// Further counts the loss is a mean over, beside the first (e.g. DPO's NLL term is a mean
    /// over the chosen completions' tokens while its pair term is a mean over pairs): the
    /// trainer sums each over the global batch and hands `evaluate` their reciprocals as
    /// `ObjectiveInput.auxiliaryScales`. `lossSum` stays in units of the first normalization.
    func auxiliaryNormalizations(of batch: MicroBatch) -> [Double]
    /// This micro-batch's loss sum (before dividing by the global normalization) and, written
    /// into `gradient`, ∂(`scale` · loss sum)/∂log p(target) per position (rows whose target is
    /// ignored are not read) — or, with a scalar head, ∂(`scale` · loss sum)/∂score.
    func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput
}

/// An objective that needs a figure of the whole global batch, under the current parameters,
/// before any micro-batch's loss: KTO's KL estimate z₀, from a forward-only pass over
/// mismatched prompt/answer pairs. The trainer calls `prepare` first in every step and every
/// evaluation, on every rank (it may run collectives over the mesh).
public protocol BatchPreparingObjective: TrainingObjective {
    func prepare(_ batches: [MicroBatch], model: ParallelModel, dataCommunicator: Communicator) throws
}

extension TrainingObjective {
    /// `prepare` for an objective that needs it; nothing for the others.
    func prepare(_ batches: [MicroBatch], model: ParallelModel, dataCommunicator: Communicator) throws {
        try (self as? any BatchPreparingObjective)?.prepare(batches, model: model, dataCommunicator: dataCommunicator)
    }

    public var metricNames: [String] { [] }
    public func auxiliaryNormalizations(of batch: MicroBatch) -> [Double] { [] }
}

/// What one micro-batch's forward gives its objective.
public struct ObjectiveInput {
    public let batch: MicroBatch
    /// [B·T] log p(target) at each position; 0 where the target is ignored.
    public let tokenLogProbabilities: UnsafeBufferPointer<Float>
    /// The forward's own Σ −log p over counted targets (summed in Double in row order) and count.
    public let crossEntropy: CrossEntropy.Total
    /// 1 / the step's global normalization.
    public let scale: Double
    /// 1 / each global auxiliary normalization (`TrainingObjective.auxiliaryNormalizations`).
    public let auxiliaryScales: [Double]
    /// A scalar-head model's scores, [B·T, labelCount] (every position: an objective reads the
    /// ones it wants, e.g. `score(atLastTokenOf:)`); empty with the language-model head.
    public let scores: UnsafeBufferPointer<Float>
    public let labelCount: Int

    public init(batch: MicroBatch, tokenLogProbabilities: UnsafeBufferPointer<Float>, crossEntropy: CrossEntropy.Total, scale: Double,
                auxiliaryScales: [Double] = [], scores: UnsafeBufferPointer<Float> = UnsafeBufferPointer(start: nil, count: 0),
                labelCount: Int = 0) {
        self.batch = batch
        self.tokenLogProbabilities = tokenLogProbabilities
        self.crossEntropy = crossEntropy
        self.scale = scale
        self.auxiliaryScales = auxiliaryScales
        self.scores = scores
        self.labelCount = labelCount
    }

    /// The score (label `label`) at the last position of `span` (a reward model's reading of a
    /// sequence, as transformers' sequence classification pools the last token).
    public func score(atLastTokenOf span: Range<Int>, label: Int = 0) -> Float {
        scores[(span.upperBound - 1) * labelCount + label]
    }
}

/// Where an objective writes its gradient: ∂/∂log p(target) per position for a language-model
/// head, ∂/∂score per position and label for a scalar head (the other is empty).
public struct ObjectiveGradient {
    /// [B·T]
    public let logProbabilities: UnsafeMutableBufferPointer<Float>
    /// [B·T, labels], zeroed before `evaluate`: an objective writes only the scores it reads.
    public let scores: UnsafeMutableBufferPointer<Float>

    public init(logProbabilities: UnsafeMutableBufferPointer<Float>,
                scores: UnsafeMutableBufferPointer<Float> = UnsafeMutableBufferPointer(start: nil, count: 0)) {
        self.logProbabilities = logProbabilities
        self.scores = scores
    }
}

/// One micro-batch's loss sum and metric sums.
public struct ObjectiveOutput: Sendable {
    /// The loss summed over what the objective normalizes by (the step divides by the global
    /// normalization).
    public var lossSum: Double
    /// Each metric as a sum and the count it is a mean over; the trainer adds both over the
    /// global batch and logs sum / count (`metrics.jsonl`, by name).
    public var metrics: [String: MetricSum]

    public init(lossSum: Double, metrics: [String: MetricSum] = [:]) {
        self.lossSum = lossSum
        self.metrics = metrics
    }
}

/// A metric's running sum and the count it is averaged over.
public struct MetricSum: Sendable, Equatable {
    public var sum: Double
    public var count: Double

    public init(sum: Double, count: Double) {
        self.sum = sum
        self.count = count
    }

    /// sum / count, or 0 when nothing counted.
    public var mean: Double { count == 0 ? 0 : sum / count }

    public static func + (a: MetricSum, b: MetricSum) -> MetricSum { MetricSum(sum: a.sum + b.sum, count: a.count + b.count) }
}

extension TrainingObjective {
    /// Runs the objective on the micro-batch `model` just ran forward with targets, leaving the
    /// gradient where `model.backward(parameters:)` reads it.
    func evaluate(after model: LlamaModel, batch: MicroBatch, crossEntropy: CrossEntropy.Total, scales: GlobalScales) -> ObjectiveOutput {
        let input = ObjectiveInput(batch: batch, tokenLogProbabilities: model.tokenLogProbabilities, crossEntropy: crossEntropy,
                                   scale: scales.primary, auxiliaryScales: scales.auxiliary, scores: model.scores,
                                   labelCount: model.config.numLabels)
        let scoreGradient = model.scoreGradient
        scoreGradient.update(repeating: 0)
        return evaluate(input, gradient: ObjectiveGradient(logProbabilities: model.logProbabilityGradient, scores: scoreGradient))
    }
}

/// 1 / the global batch's normalizations (`TrainingObjective.normalization(of:)`, then its
/// auxiliary ones), summed over every micro-batch of every data-parallel rank.
struct GlobalScales {
    let count: Double
    let auxiliary: [Double]
    var primary: Double { 1 / count }

    /// Sums `objective`'s normalizations of `batches` over `communicator` (one all-reduce); throws
    /// an agreed failure when the batch has nothing the objective counts.
    init(_ objective: any TrainingObjective, batches: [MicroBatch], communicator: Communicator, what: String) throws {
        let local = batches.reduce(0.0) { $0 + objective.normalization(of: $1) }
        var auxiliary = batches.reduce(into: [Double]()) { sums, batch in
            let counts = objective.auxiliaryNormalizations(of: batch)
            if sums.isEmpty { sums = counts } else { for index in counts.indices { sums[index] += counts[index] } }
        }
        // One scalar all-reduce when there is no auxiliary count: pretraining's scale stays the same float.
        if auxiliary.isEmpty {
            count = try communicator.allreduce(local, .sum)
        } else {
            var sums = [local] + auxiliary
            try communicator.allreduce(&sums, .sum)
            count = sums[0]
            auxiliary = Array(sums.dropFirst())
        }
        guard count > 0 else {
            throw CollectiveFailure.agreed("\(what): the batch has nothing to learn from (the \(objective.name) objective counts 0 in it)")
        }
        self.auxiliary = auxiliary.map { $0 > 0 ? 1 / $0 : 0 }
    }
}

/// A step's objective sums on one rank, as one array to all-reduce: the loss sum, then each
/// metric's sum and count in `metricNames` order (zeros on ranks without the head).
struct ObjectiveSums {
    let metricNames: [String]
    var values: [Double]

    init(_ objective: any TrainingObjective) {
        metricNames = objective.metricNames
        values = [Double](repeating: 0, count: 1 + 2 * metricNames.count)
    }

    var lossSum: Double { values[0] }

    mutating func add(_ output: ObjectiveOutput) {
        values[0] += output.lossSum
        for (index, name) in metricNames.enumerated() {
            guard let metric = output.metrics[name] else { continue }
            values[1 + 2 * index] += metric.sum
            values[2 + 2 * index] += metric.count
        }
    }

    /// Each metric's sum / count.
    var means: [String: Double] {
        Dictionary(uniqueKeysWithValues: metricNames.enumerated().map { index, name in
            (name, MetricSum(sum: values[1 + 2 * index], count: values[2 + 2 * index]).mean)
        })
    }
}
