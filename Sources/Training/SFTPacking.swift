import DataPipeline
import Model
import Runtime
import Tensors

/// What to do with a tokenized sample longer than a row (`seq_len`).
public enum SFTTruncation: String, ConfigChoice {
    /// Leave it out (counted and reported).
    case drop
    /// Keep its first `seq_len` tokens.
    case keepStart = "keep_start"
    /// Keep its last `seq_len` tokens.
    case keepEnd = "keep_end"
}

/// Tokenized SFT samples packed into rows of `seq_len` tokens, best fit decreasing: longest
/// sample first, each into the row whose free room it fills best (a new row when none has room).
/// Each sample keeps its own positions (0, 1, …), so with document masking a token attends only
/// to its own sample, and a packed row's loss and gradients are those of its samples apart.
/// The rest of a row is padding that predicts nothing.
public struct SFTPackedRows: Sendable {
    public let sequenceLength: Int
    /// Each row's samples, as indices into `samples`.
    public let rows: [[Int]]
    public let samples: [TokenizedSample]
    /// Samples left out as too long (`drop`), cut (`keep_start`/`keep_end`), or with nothing left
    /// to learn after cutting.
    public let droppedCount: Int
    public let truncatedCount: Int
    /// The id padding is written with (it is never a target).
    public let paddingId: Int32

    public init(_ samples: [TokenizedSample], sequenceLength: Int, truncation: SFTTruncation, paddingId: Int32) {
        var kept: [TokenizedSample] = []
        var dropped = 0, truncated = 0
        for var sample in samples {
            if sample.ids.count > sequenceLength {
                switch truncation {
                case .drop:
                    dropped += 1
                    continue
                case .keepStart:
                    sample.ids.removeLast(sample.ids.count - sequenceLength)
                    sample.supervised.removeLast(sample.supervised.count - sequenceLength)
                case .keepEnd:
                    sample.ids.removeFirst(sample.ids.count - sequenceLength)
                    sample.supervised.removeFirst(sample.supervised.count - sequenceLength)
                }
                truncated += 1
            }
            // Position 0 predicts nothing (no token before it): a sample needs a supervised token after it.
            guard sample.supervised.dropFirst().contains(true) else {
                dropped += 1
                continue
            }
            kept.append(sample)
        }
        let order = kept.indices.sorted { (kept[$0].ids.count, $1) > (kept[$1].ids.count, $0) }
        var rows: [[Int]] = [], free: [Int] = []
        for index in order {
            let length = kept[index].ids.count
            var best: Int?
            for row in free.indices where free[row] >= length && free[row] < (best.map { free[$0] } ?? .max) { best = row }
            if let best {
                rows[best].append(index)
                free[best] -= length
            } else {
                rows.append([index])
                free.append(sequenceLength - length)
            }
        }
        self.sequenceLength = sequenceLength
        self.rows = rows
        self.samples = kept
        droppedCount = dropped
        truncatedCount = truncated
        self.paddingId = paddingId
    }

    /// Real tokens over the rows' slots.
    public var efficiency: Double {
        rows.isEmpty ? 0 : Double(samples.reduce(0) { $0 + $1.ids.count }) / Double(rows.count * sequenceLength)
    }

    /// Row `index` as model inputs: tokens, targets (the next token where it is supervised, else
    /// −100) and positions restarting at each sample (padding is its own span).
    public func row(_ index: Int) -> (tokens: [Int32], targets: [Int32], positions: [Int32]) {
        var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = []
        for sample in rows[index].map({ samples[$0] }) {
            for position in sample.ids.indices {
                tokens.append(sample.ids[position])
                let next = position + 1
                targets.append(next < sample.ids.count && sample.supervised[next] ? sample.ids[next] : CrossEntropy.defaultIgnoreIndex)
                positions.append(Int32(position))
            }
        }
        let padding = sequenceLength - tokens.count
        tokens += [Int32](repeating: paddingId, count: padding)
        targets += [Int32](repeating: CrossEntropy.defaultIgnoreIndex, count: padding)
        positions += (0..<Int32(padding)).map { $0 }
        return (tokens, targets, positions)
    }
}

/// The micro-batches of SFT steps: step s takes global rows s·G … s·G + G − 1 (G =
/// global_batch_size rows), in a seeded order reshuffled every epoch (or in order), and this
/// data-parallel rank its contiguous share of them — so every layout trains on the same rows.
public struct SFTBatches: BatchSource {
    public let packed: SFTPackedRows
    public let globalBatchSize: Int
    public let microBatchSize: Int
    public let dataParallelDegree: Int
    public let rank: Int
    public let shuffle: Bool
    public let seed: UInt64

    public init(_ packed: SFTPackedRows, globalBatchSize: Int, microBatchSize: Int, dataParallelDegree: Int, rank: Int,
                shuffle: Bool, seed: UInt64) {
        self.packed = packed
        self.globalBatchSize = globalBatchSize
        self.microBatchSize = microBatchSize
        self.dataParallelDegree = dataParallelDegree
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
    }

    public func microBatches(step: Int) throws -> [MicroBatch] {
        let count = packed.rows.count
        let perRank = globalBatchSize / dataParallelDegree
        func globalRow(_ index: Int) -> Int {
            let epoch = index / count, offset = index % count
            return shuffle ? SamplePermutation(count: count, seed: seed, epoch: epoch)[offset] : offset
        }
        return stride(from: 0, to: perRank, by: microBatchSize).map { first in
            var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = []
            for offset in 0..<microBatchSize {
                let row = packed.row(globalRow(step * globalBatchSize + rank * perRank + first + offset))
                tokens += row.tokens
                targets += row.targets
                positions += row.positions
            }
            return MicroBatch(tokens: tokens, targets: targets, positions: positions, sequenceLength: packed.sequenceLength,
                              firstRow: rank * perRank + first)
        }
    }
}
