import DataPipeline
import Runtime
import Tensors

/// KTO (`KTOLoss`, TRL's `KTOTrainer`) as a training objective over unpaired samples, each an
/// answer labelled desirable or undesirable: every sample's policy Σ log p over its answer, the
/// reference's from the cache, and z₀ — the policy/reference KL estimated on mismatched
/// prompt/answer pairs of the same global batch — give each sample's loss and its gradient.
///
/// z₀ comes before any loss (`prepare`): a forward-only pass of the policy over the mismatched
/// sequences of this rank's samples (`MismatchedSequences`), the mean of policy − reference over
/// the global batch (one all-reduce), clamped at 0 and held constant, as TRL gathers and detaches
/// it. The loss is a mean over the global batch's samples.
public struct KTOObjective: BatchPreparingObjective {
    public let loss: KTOLoss
    public let mismatched: MismatchedSequences
    public let metricNames: [String]

    public init(loss: KTOLoss, mismatched: MismatchedSequences) {
        self.loss = loss
        self.mismatched = mismatched
        let probe = [KTOLoss.LabeledSequence(policy: -1, reference: -1, desirable: true)]
        metricNames = loss.evaluate(sequences: probe, klEstimate: 0, scale: 1).metrics.keys.sorted()
    }

    public var name: String { "kto" }

    public func normalization(of batch: MicroBatch) -> Double { Double(batch.preferenceSequences.count) }

    public func prepare(_ batches: [MicroBatch], model: ParallelModel, dataCommunicator: Communicator) throws {
        try mismatched.estimate(for: batches, model: model, communicator: dataCommunicator)
    }

    public func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput {
        let sequences = input.batch.preferenceSequences
        let labelled = sequences.map { sequence in
            KTOLoss.LabeledSequence(policy: sequenceSum(sequence, input).sum, reference: sequence.reference,
                                    desirable: sequence.role == .desirable)
        }
        let result = loss.evaluate(sequences: labelled, klEstimate: mismatched.currentEstimate, scale: input.scale)
        let gradients = gradient.logProbabilities
        gradients.update(repeating: 0)
        for (sequence, value) in zip(sequences, result.gradients) {
            for position in sequence.span where input.batch.counts(position) { gradients[position] = Float(value) }
        }
        return ObjectiveOutput(lossSum: input.scale > 0 ? result.loss / input.scale : 0, metrics: result.metrics)
    }
}

/// KTO's mismatched sequences: sample i's prompt followed by the answer of sample i + 1 (the
/// next sample of the data set, wrapping), as TRL pairs each prompt with the next answer of its
/// batch; fitted to a row by cutting prompt tokens from the start. Their reference figures come
/// from the reference pass (`PreferenceReference`, as the second sequence of each sample);
/// `estimate` scores the ones of a step's samples under the current policy.
public final class MismatchedSequences: @unchecked Sendable {
    /// Sample i's mismatched sequence.
    public let sequences: [TokenizedSample]
    /// Σ log p of each mismatched answer under the reference (set after the reference pass).
    public var references: [Double]
    public let sequenceLength: Int
    public let rowsPerBatch: Int
    public let paddingId: Int32
    /// z₀ of the last `estimate` (before the clamp, which `KTOLoss` applies).
    public private(set) var currentEstimate = 0.0

    public init(samples: [TokenizedUnpaired], sequenceLength: Int, rowsPerBatch: Int, paddingId: Int32) {
        func promptLength(_ sample: TokenizedSample) -> Int { sample.supervised.firstIndex(of: true) ?? sample.ids.count }
        sequences = samples.indices.map { index in
            let (own, next) = (samples[index].sample, samples[(index + 1) % samples.count].sample)
            let prompt = promptLength(own), answerStart = promptLength(next)
            var ids = Array(own.ids[..<prompt]) + next.ids[answerStart...]
            var supervised = [Bool](repeating: false, count: prompt) + next.supervised[answerStart...]
            if ids.count > sequenceLength {
                ids.removeFirst(ids.count - sequenceLength)
                supervised.removeFirst(supervised.count - sequenceLength)
            }
            return TokenizedSample(ids: ids, supervised: supervised)
        }
        references = [Double](repeating: 0, count: samples.count)
        self.sequenceLength = sequenceLength
        self.rowsPerBatch = rowsPerBatch
        self.paddingId = paddingId
    }

    /// Sets `currentEstimate` to the mean over the global batch of policy − reference Σ log p of
    /// the mismatched sequences of `batches`' samples. Collective over `communicator` (every rank
    /// makes as many forward calls as the rank with the most rows).
    func estimate(for batches: [MicroBatch], model: ParallelModel, communicator: Communicator) throws {
        let samples = batches.flatMap { $0.preferenceSequences.map(\.pair) }
        let rows = MismatchedRows(self, samples: samples)
        var batchCount = (rows.rowCount + rowsPerBatch - 1) / rowsPerBatch
        batchCount = Int(try communicator.allreduce(Int64(batchCount), .max))
        let micro = try (0..<batchCount).map { batch in
            try PackedBatches.microBatch(rows, indices: (0..<rowsPerBatch).map { batch * rowsPerBatch + $0 }, firstRow: 0)
        }
        var sums = [0.0, 0.0]
        for (batch, figures) in zip(micro, try model.preferenceSequenceSums(micro)) {
            for (sequence, policy) in zip(batch.preferenceSequences, figures) {
                sums[0] += policy - references[sequence.pair]
                sums[1] += 1
            }
        }
        try communicator.allreduce(&sums, .sum)
        currentEstimate = sums[1] > 0 ? sums[0] / sums[1] : 0
    }
}

/// The mismatched sequences of some samples packed in order into rows (a row past the last is
/// padding only).
private struct MismatchedRows: PackedRowSource {
    let owner: MismatchedSequences
    let rows: [[Int]]

    init(_ owner: MismatchedSequences, samples: [Int]) {
        self.owner = owner
        var rows: [[Int]] = [], used = 0
        for sample in samples {
            let length = owner.sequences[sample].ids.count
            if rows.isEmpty || used + length > owner.sequenceLength {
                rows.append([])
                used = 0
            }
            rows[rows.count - 1].append(sample)
            used += length
        }
        self.rows = rows
    }

    var rowCount: Int { rows.count }
    var sequenceLength: Int { owner.sequenceLength }

    func packedRow(_ index: Int) throws -> PackedRow {
        var row = PackedRow(tokens: [], targets: [], positions: [])
        for sample in index < rows.count ? rows[index] : [] {
            let start = row.tokens.count
            append(owner.sequences[sample], to: &row)
            row.sequences.append(PreferenceSequence(span: start..<row.tokens.count, pair: sample, role: .chosen))
        }
        pad(&row, to: owner.sequenceLength, with: owner.paddingId)
        return row
    }
}

/// KTO samples packed into rows of `seq_len` (each its own positions and attention), labelled
/// desirable or undesirable, with their answers' reference figures once the reference pass ran.
public struct UnpairedPackedRows: PackedRowSource {
    public let sequenceLength: Int
    public let rows: [[Int]]
    public let samples: [TokenizedUnpaired]
    public let paddingId: Int32
    /// Σ log p of each sample's answer under the reference.
    public var references: [Double]?

    /// Sample i's index among every sample the run's `MismatchedSequences` hold (eval samples
    /// follow the train ones).
    public let firstIndex: Int

    public init(_ samples: [TokenizedUnpaired], sequenceLength: Int, paddingId: Int32, packing: SFTPacking = .auto, firstIndex: Int = 0) {
        self.firstIndex = firstIndex
        self.sequenceLength = sequenceLength
        self.samples = samples
        self.rows = packing.rows(lengths: samples.map(\.sample.ids.count), sequenceLength: sequenceLength)
        self.paddingId = paddingId
    }

    public var rowCount: Int { rows.count }

    public func packedRow(_ index: Int) throws -> PackedRow {
        var row = PackedRow(tokens: [], targets: [], positions: [])
        for sampleIndex in rows[index] {
            let sample = samples[sampleIndex]
            let start = row.tokens.count
            append(sample.sample, to: &row)
            row.sequences.append(PreferenceSequence(span: start..<row.tokens.count, pair: firstIndex + sampleIndex,
                                                    role: sample.desirable ? .desirable : .undesirable,
                                                    reference: references?[sampleIndex] ?? 0))
        }
        pad(&row, to: sequenceLength, with: paddingId)
        return row
    }

    /// Each sample with its mismatched sequence, as pairs for the reference pass (`PreferenceReference`
    /// caches the answer's figure as the first of each pair and the mismatched one's as the second).
    public func referencePairs(_ mismatched: MismatchedSequences) -> PreferencePackedRows {
        let pairs = samples.indices.map { index in
            TokenizedPair(source: samples[index].source, chosen: samples[index].sample, rejected: mismatched.sequences[firstIndex + index])
        }
        return PreferencePackedRows(splitting: pairs, sequenceLength: sequenceLength, paddingId: paddingId)
    }
}
