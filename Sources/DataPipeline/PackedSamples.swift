import Runtime

/// What happens to the target that crosses a document boundary: the one whose input is an EOS,
/// so the target is the first token of the next document (packed sequences, EOS-separated).
/// A config choice (`data.boundary_targets`).
public enum BoundaryTargets: String, ConfigChoice {
    /// Trained on, as GPT-2 and most packed pretraining do: after EOS the model predicts how a
    /// document starts (EOS doubles as BOS).
    case keep
    /// Set to `PackedSamples.ignoreIndex`: no loss for guessing a new document from the end of
    /// an unrelated one (use with document-masked attention).
    case ignore
}

/// A batch of packed training samples, each array `[sampleCount, sequenceLength]` row-major.
public struct TokenBatch: Equatable, Sendable {
    public var sampleCount: Int
    public var sequenceLength: Int
    /// The model's input ids: tokens 0..<T of each sample.
    public var inputs: [Int32]
    /// The ids to predict: tokens 1...T of each sample (`ignoreIndex` where masked).
    public var targets: [Int32]
    /// Each input's position in its document within the sample: 0 at the sample's first token
    /// and again after every EOS, so RoPE restarts with each packed document.
    public var positions: [Int32]
}

/// Fixed-length training samples over a `TokenDataset`, addressed by a global sample index.
///
///     sample i = tokens [i·T, i·T + T + 1)        (T = sequenceLength)
///     inputs   = its first T tokens, targets = its last T
///     count    = (tokenCount − 1) / T
///
/// The windows do not overlap; only the extra target token is shared with the next sample.
/// Documents are packed across samples as they lie in the stream (EOS-separated).
public final class PackedSamples {
    /// The target value that the loss skips; equals `CrossEntropy.defaultIgnoreIndex` (Tensors).
    public static let ignoreIndex: Int32 = -100

    public let dataset: TokenDataset
    public let sequenceLength: Int
    public let sampleCount: Int
    /// Where positions restart and `boundaryTargets` applies; nil: positions run 0..<T.
    public let eosId: Int32?
    public let boundaryTargets: BoundaryTargets

    /// `eosId` defaults to the dataset's. A sequence length that leaves no sample is an error.
    public init(dataset: TokenDataset, sequenceLength: Int, eosId: Int32? = nil,
                boundaryTargets: BoundaryTargets = .keep) throws(DataError) {
        guard sequenceLength >= 1 else { throw DataError("sequence length must be at least 1, got \(sequenceLength)") }
        let samples = max(0, (dataset.tokenCount - 1) / sequenceLength)
        guard samples >= 1 else {
            throw DataError("\(dataset.path): sequence length \(sequenceLength) needs at least \(sequenceLength + 1) tokens, but the data holds \(dataset.tokenCount)")
        }
        let eos = eosId ?? dataset.eosId
        if boundaryTargets == .ignore && eos == nil {
            throw DataError("\(dataset.path): masking targets at document boundaries needs the EOS id (give it for .bin/.npy data)")
        }
        self.dataset = dataset
        self.sequenceLength = sequenceLength
        self.sampleCount = samples
        self.eosId = eos
        self.boundaryTargets = boundaryTargets
    }

    /// The T + 1 tokens of sample `index`.
    public func tokens(ofSample index: Int) throws(DataError) -> [Int32] {
        precondition(index >= 0 && index < sampleCount, "sample \(index) outside 0..<\(sampleCount)")
        return try dataset.tokens(index * sequenceLength..<(index * sequenceLength + sequenceLength + 1))
    }

    /// The samples `indices` as one batch.
    public func batch(_ indices: [Int]) throws(DataError) -> TokenBatch {
        let count = indices.count * sequenceLength
        var batch = TokenBatch(sampleCount: indices.count, sequenceLength: sequenceLength,
                               inputs: [Int32](repeating: 0, count: count), targets: [Int32](repeating: 0, count: count),
                               positions: [Int32](repeating: 0, count: count))
        try batch.inputs.withUnsafeMutableBufferPointer { (inputs) throws(DataError) in
            try batch.targets.withUnsafeMutableBufferPointer { (targets) throws(DataError) in
                try batch.positions.withUnsafeMutableBufferPointer { (positions) throws(DataError) in
                    try fill(indices, inputs: inputs, targets: targets, positions: positions)
                }
            }
        }
        return batch
    }

    /// Writes samples `indices` into caller-owned buffers of `indices.count × sequenceLength`
    /// (no allocation per step beyond one sample's tokens).
    public func fill(_ indices: [Int], inputs: UnsafeMutableBufferPointer<Int32>, targets: UnsafeMutableBufferPointer<Int32>,
                     positions: UnsafeMutableBufferPointer<Int32>) throws(DataError) {
        let length = sequenceLength
        precondition(inputs.count >= indices.count * length && targets.count >= indices.count * length
                     && positions.count >= indices.count * length, "buffers smaller than the batch")
        var window = [Int32](repeating: 0, count: length + 1)
        for (row, index) in indices.enumerated() {
            precondition(index >= 0 && index < sampleCount, "sample \(index) outside 0..<\(sampleCount)")
            try window.withUnsafeMutableBufferPointer { (buffer) throws(DataError) in
                try dataset.read(index * length..<(index * length + length + 1), into: buffer.baseAddress!)
            }
            let base = row * length
            var position: Int32 = 0
            for t in 0..<length {
                let input = window[t]
                inputs[base + t] = input
                positions[base + t] = position
                let atBoundary = input == eosId
                targets[base + t] = atBoundary && boundaryTargets == .ignore ? Self.ignoreIndex : window[t + 1]
                position = atBoundary ? 0 : position + 1
            }
        }
    }
}
