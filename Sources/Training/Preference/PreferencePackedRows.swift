import DataPipeline
import Model
import Tensors

/// One whole sequence of a micro-batch that a preference or reward objective reads: a pair's
/// chosen or rejected answer (its prompt included), where it lies in the micro-batch, and what
/// the objective needs beside the policy's log-probabilities.
public struct PreferenceSequence: Sendable, Equatable {
    public enum Role: Sendable, Equatable {
        /// A pair's two answers (DPO, reward models).
        case chosen, rejected
        /// An unpaired sample's answer and its label (KTO).
        case desirable, undesirable
    }

    /// Its positions in the micro-batch's flattened [B·T] tokens (prompt and answer; only the
    /// answer's tokens have targets).
    public var span: Range<Int>
    /// The pair's (or unpaired sample's) index in its data set (what the reference cache is keyed by).
    public var pair: Int
    public var role: Role
    /// Σ log p of the answer's tokens under the reference model (0 until the reference pass
    /// has run, or for losses without a reference).
    public var reference: Double
    /// The pair's margin (`margin` in the data; 0 when absent).
    public var margin: Double

    public init(span: Range<Int>, pair: Int, role: Role, reference: Double = 0, margin: Double = 0) {
        self.span = span
        self.pair = pair
        self.role = role
        self.reference = reference
        self.margin = margin
    }
}

/// One packed row as model inputs, with the whole sequences objectives read in it (spans
/// relative to the row's start).
public struct PackedRow: Sendable {
    public var tokens: [Int32]
    public var targets: [Int32]
    public var positions: [Int32]
    public var sequences: [PreferenceSequence] = []
}

/// Rows of `seq_len` tokens that batches are cut from (`PackedBatches`): SFT samples
/// (`SFTPackedRows`) or preference pairs (`PreferencePackedRows`).
public protocol PackedRowSource {
    var rowCount: Int { get }
    var sequenceLength: Int { get }
    func packedRow(_ index: Int) throws -> PackedRow
}

/// Preference pairs packed into rows of `seq_len` tokens: each pair's chosen sequence (prompt +
/// chosen answer), then its rejected one, each with positions restarting at 0, so with document
/// masking neither attends to the other and both lie in one micro-batch, which is all a pair loss
/// needs. Pairs are packed by `SFTPacking` from the lengths of both sequences together; the
/// rest of a row is padding that predicts nothing. The prompt is computed twice, once per
/// sequence, as TRL does.
///
/// A pair whose two sequences together exceed a row is fitted to half a row a side
/// (`TokenizedPair.fitted`: dropped with `truncation: drop`, else cut); a side left with nothing
/// to learn drops the pair. Both are counted (`fitCounts`).
public struct PreferencePackedRows: PackedRowSource {
    public let sequenceLength: Int
    /// Each row's units (indices into `units`).
    public let rows: [[Int]]
    /// What packing placed: a pair's two sequences together (training), or one of them alone
    /// (`splitting`, for a reference pass that needs no pair in one row).
    public let units: [(pair: Int, roles: [PreferenceSequence.Role])]
    /// The pairs kept, fitted.
    public let pairs: [TokenizedPair]
    /// What fitting kept, cut and dropped.
    public let fitCounts: PreferenceFitCounts
    public let tokenCount: Int
    public let paddingId: Int32
    /// Σ log p of each pair's chosen (2p) and rejected (2p + 1) answer under the reference model,
    /// once the reference pass has filled it (`PreferenceReference`).
    public var references: [Double]?

    public init(_ pairs: [TokenizedPair], sequenceLength: Int, truncation: SFTTruncation, paddingId: Int32, packing: SFTPacking = .auto) {
        var counts = PreferenceFitCounts()
        let kept = pairs.compactMap { counts.count($0.fittedToRow(sequenceLength, truncation: truncation)) }
        self.init(fitted: kept, fitCounts: counts, sequenceLength: sequenceLength, paddingId: paddingId, packing: packing)
    }

    /// Packs pairs already fitted to a row (`TokenizedPair.fittedToRow`: a directory of
    /// `meshlm data pref-tokenize`'s, whose manifest gives the counts).
    public init(fitted pairs: [TokenizedPair], fitCounts: PreferenceFitCounts, sequenceLength: Int, paddingId: Int32,
                packing: SFTPacking = .auto) {
        precondition(pairs.allSatisfy { $0.chosen.ids.count + $0.rejected.ids.count <= sequenceLength }, "fitted pairs fit a row")
        self.init(pairs, units: pairs.indices.map { ($0, [.chosen, .rejected]) }, fitCounts: fitCounts, sequenceLength: sequenceLength,
                  paddingId: paddingId, packing: packing)
    }

    /// Every pair kept as it is, each sequence packed on its own (each at most a row).
    public init(splitting pairs: [TokenizedPair], sequenceLength: Int, paddingId: Int32, packing: SFTPacking = .auto) {
        var counts = PreferenceFitCounts()
        counts.kept = pairs.count
        self.init(pairs, units: pairs.indices.flatMap { [($0, [PreferenceSequence.Role.chosen]), ($0, [.rejected])] }, fitCounts: counts,
                  sequenceLength: sequenceLength, paddingId: paddingId, packing: packing)
    }

    private init(_ pairs: [TokenizedPair], units: [(pair: Int, roles: [PreferenceSequence.Role])], fitCounts: PreferenceFitCounts,
                 sequenceLength: Int, paddingId: Int32, packing: SFTPacking) {
        func length(_ unit: (pair: Int, roles: [PreferenceSequence.Role])) -> Int {
            unit.roles.reduce(0) { $0 + ($1 == .chosen ? pairs[unit.pair].chosen : pairs[unit.pair].rejected).ids.count }
        }
        self.sequenceLength = sequenceLength
        self.pairs = pairs
        self.units = units
        self.rows = packing.rows(lengths: units.map(length), sequenceLength: sequenceLength)
        self.fitCounts = fitCounts
        self.tokenCount = units.reduce(0) { $0 + length($1) }
        self.paddingId = paddingId
    }

    public var rowCount: Int { rows.count }

    /// Real tokens over the rows' slots.
    public var efficiency: Double { rows.isEmpty ? 0 : Double(tokenCount) / Double(rows.count * sequenceLength) }

    /// Row `index` as model inputs: each pair's chosen, then rejected, sequence (targets on the
    /// answers' tokens only), then padding.
    public func packedRow(_ index: Int) throws -> PackedRow {
        var row = PackedRow(tokens: [], targets: [], positions: [])
        for unit in rows[index].map({ units[$0] }) {
            let pair = pairs[unit.pair]
            for role in unit.roles {
                let start = row.tokens.count
                append(role == .chosen ? pair.chosen : pair.rejected, to: &row)
                let reference = references.map { $0[2 * unit.pair + (role == .chosen ? 0 : 1)] } ?? 0
                row.sequences.append(PreferenceSequence(span: start..<row.tokens.count, pair: unit.pair, role: role,
                                                        reference: reference, margin: pair.margin ?? 0))
            }
        }
        pad(&row, to: sequenceLength, with: paddingId)
        return row
    }
}

extension ParallelModel {
    /// Σ log p of the answer of every preference sequence of every micro-batch
    /// (`MicroBatch.preferenceSequences`, in order), forward only: each is one of the batch's
    /// `sequenceSpans`, since positions restart where it starts.
    func preferenceSequenceSums(_ batches: [MicroBatch]) throws -> [[Double]] {
        zip(batches, try sequenceLogProbabilities(batches)).map { batch, figures in
            let byStart = Dictionary(uniqueKeysWithValues: zip(batch.sequenceSpans.map(\.lowerBound), figures.map(\.sum)))
            return batch.preferenceSequences.map { byStart[$0.span.lowerBound] ?? 0 }
        }
    }
}

/// Appends `sample` to `row`: its ids, the next id as the target where it is supervised (else
/// −100), positions from 0.
func append(_ sample: TokenizedSample, to row: inout PackedRow) {
    for position in sample.ids.indices {
        row.tokens.append(sample.ids[position])
        let next = position + 1
        row.targets.append(next < sample.ids.count && sample.supervised[next] ? sample.ids[next] : CrossEntropy.defaultIgnoreIndex)
        row.positions.append(Int32(position))
    }
}

/// Fills `row` to `length` tokens with padding that predicts nothing (its own span of positions).
func pad(_ row: inout PackedRow, to length: Int, with paddingId: Int32) {
    let padding = length - row.tokens.count
    row.tokens += [Int32](repeating: paddingId, count: padding)
    row.targets += [Int32](repeating: CrossEntropy.defaultIgnoreIndex, count: padding)
    row.positions += (0..<Int32(padding)).map { $0 }
}

/// The micro-batches of fine-tuning steps over packed rows (SFT samples or preference pairs):
/// step s takes global rows s·G … s·G + G − 1 (G = global_batch_size rows), in a seeded order
/// reshuffled every epoch (or in order), and this data-parallel rank its contiguous share of
/// them — so every layout trains on the same rows.
public struct PackedBatches: BatchSource {
    public let rows: any PackedRowSource
    public let globalBatchSize: Int
    public let microBatchSize: Int
    public let dataParallelDegree: Int
    public let rank: Int
    public let shuffle: Bool
    public let seed: UInt64

    public init(_ rows: any PackedRowSource, globalBatchSize: Int, microBatchSize: Int, dataParallelDegree: Int, rank: Int,
                shuffle: Bool, seed: UInt64) {
        self.rows = rows
        self.globalBatchSize = globalBatchSize
        self.microBatchSize = microBatchSize
        self.dataParallelDegree = dataParallelDegree
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
    }

    public func microBatches(step: Int) throws -> [MicroBatch] {
        let count = rows.rowCount
        let perRank = globalBatchSize / dataParallelDegree
        func globalRow(_ index: Int) -> Int {
            let epoch = index / count, offset = index % count
            return shuffle ? SamplePermutation(count: count, seed: seed, epoch: epoch)[offset] : offset
        }
        return try stride(from: 0, to: perRank, by: microBatchSize).map { first in
            try Self.microBatch(rows, indices: (0..<microBatchSize).map { globalRow(step * globalBatchSize + rank * perRank + first + $0) },
                                firstRow: rank * perRank + first)
        }
    }

    /// The micro-batch of `rows`' rows `indices`, in order (each row's sequences' spans moved to
    /// where the row starts in it).
    static func microBatch(_ rows: any PackedRowSource, indices: [Int], firstRow: Int) throws -> MicroBatch {
        var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = [], sequences: [PreferenceSequence] = []
        for index in indices {
            let row = try rows.packedRow(index)
            let offset = tokens.count
            tokens += row.tokens
            targets += row.targets
            positions += row.positions
            sequences += row.sequences.map { sequence in
                var moved = sequence
                moved.span = sequence.span.lowerBound + offset..<sequence.span.upperBound + offset
                return moved
            }
        }
        var batch = MicroBatch(tokens: tokens, targets: targets, positions: positions, sequenceLength: rows.sequenceLength,
                               firstRow: firstRow)
        batch.preferenceSequences = sequences
        return batch
    }
}
