import Tensors

/// One micro-batch of a rank: `microBatchSize × seqLen` token ids, next-token targets (−100 where
/// no loss counts) and positions within each token's document (RoPE restarts per document).
public struct MicroBatch: Sendable {
    public var tokens: [Int32]
    public var targets: [Int32]
    public var positions: [Int32]
    /// A weight per position for objectives that weight tokens (`MaskedNextTokenObjective`):
    /// 0 leaves a position out of the loss; nil weighs every counted target 1.
    public var lossWeights: [Float]?
    /// Tokens per row (T): the arrays hold B rows of T.
    public var sequenceLength: Int
    /// The index of its first row in the step's global batch (rank r's micro-batch j starts at
    /// r · rows per rank + j · B): what LoRA dropout keys its masks by, so every data-parallel
    /// layout draws one rank's.
    public var firstRow: Int
    /// The whole sequences a preference or reward objective reads (each pair's chosen and
    /// rejected, with their reference log-probabilities); empty for token-level objectives.
    public var preferenceSequences: [PreferenceSequence] = []

    /// - Parameter sequenceLength: T; the arrays hold B·T ids (one row when nil).
    public init(tokens: [Int32], targets: [Int32], positions: [Int32], lossWeights: [Float]? = nil, sequenceLength: Int? = nil,
                firstRow: Int = 0) {
        let sequenceLength = sequenceLength ?? tokens.count
        precondition(targets.count == tokens.count && positions.count == tokens.count,
                     "\(tokens.count) tokens, \(targets.count) targets and \(positions.count) positions")
        precondition(lossWeights.map { $0.count == tokens.count } ?? true,
                     "\(lossWeights?.count ?? 0) loss weights for \(tokens.count) tokens")
        precondition(sequenceLength > 0 && tokens.count % sequenceLength == 0,
                     "rows of \(sequenceLength) do not tile \(tokens.count) tokens")
        self.tokens = tokens
        self.targets = targets
        self.positions = positions
        self.lossWeights = lossWeights
        self.sequenceLength = sequenceLength
        self.firstRow = firstRow
    }

    public var targetCount: Int { targets.reduce(0) { $0 + ($1 == CrossEntropy.defaultIgnoreIndex ? 0 : 1) } }

    /// Whether position `index` has a target that counts.
    @inline(__always)
    public func counts(_ index: Int) -> Bool { targets[index] != CrossEntropy.defaultIgnoreIndex }

    /// The sequences of the micro-batch as ranges of its flattened [B·T] positions: each row
    /// split where positions do not continue (a packed row holds several documents; the rule
    /// `documentMasking` uses).
    public var sequenceSpans: [Range<Int>] {
        var spans: [Range<Int>] = []
        for rowStart in stride(from: 0, to: tokens.count, by: sequenceLength) {
            var start = rowStart
            for index in rowStart + 1..<rowStart + sequenceLength where positions[index] != positions[index - 1] + 1 {
                spans.append(start..<index)
                start = index
            }
            spans.append(start..<rowStart + sequenceLength)
        }
        return spans
    }

    /// Runs `body` with pointers to the three arrays (never empty: a micro-batch has ≥ 1 token).
    func withPointers<Result>(_ body: (UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafePointer<Int32>) -> Result) -> Result {
        tokens.withUnsafeBufferPointer { tokens in
            targets.withUnsafeBufferPointer { targets in
                positions.withUnsafeBufferPointer { positions in
                    guard let t = tokens.baseAddress, let g = targets.baseAddress, let p = positions.baseAddress else {
                        preconditionFailure("an empty micro-batch")
                    }
                    return body(t, g, p)
                }
            }
        }
    }
}
