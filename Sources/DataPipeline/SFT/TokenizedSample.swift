import Runtime

/// One SFT sample as token ids, with the tokens the loss is taken on.
public struct TokenizedSample: Sendable, Equatable {
    public var ids: [Int32]
    /// `supervised[i]`: whether predicting `ids[i]` (from the tokens before it) is in the loss.
    public var supervised: [Bool]

    public init(ids: [Int32], supervised: [Bool]) {
        precondition(ids.count == supervised.count, "a mask entry per token")
        self.ids = ids
        self.supervised = supervised
    }

    public var supervisedCount: Int { supervised.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// What became of a sample fitted to a row of `seq_len` tokens.
    public enum Fit: Sendable, Equatable {
        /// It fits as it is.
        case kept(TokenizedSample)
        /// It was longer than a row and cut (`keep_start`/`keep_end`).
        case truncated(TokenizedSample)
        /// Left out: too long (`drop`), or nothing left to learn (after cutting).
        case dropped
    }

    /// This sample fitted to rows of `sequenceLength` tokens: cut or dropped when longer, as
    /// `truncation` says, and dropped when no token after the first is supervised (position 0
    /// predicts nothing, having no token before it). The in-memory path of `meshlm sft` and
    /// `meshlm data sft-tokenize` both fit samples here, so both keep the same samples.
    public func fitted(to sequenceLength: Int, truncation: SFTTruncation) -> Fit {
        var sample = self
        var cut = false
        if ids.count > sequenceLength {
            switch truncation {
            case .drop:
                return .dropped
            case .keepStart:
                sample.ids.removeLast(ids.count - sequenceLength)
                sample.supervised.removeLast(ids.count - sequenceLength)
            case .keepEnd:
                sample.ids.removeFirst(ids.count - sequenceLength)
                sample.supervised.removeFirst(ids.count - sequenceLength)
            }
            cut = true
        }
        guard sample.supervised.dropFirst().contains(true) else { return .dropped }
        return cut ? .truncated(sample) : .kept(sample)
    }
}

/// What to do with a tokenized sample longer than a row (`seq_len`).
public enum SFTTruncation: String, ConfigChoice {
    /// Leave it out (counted and reported).
    case drop
    /// Keep its first `seq_len` tokens.
    case keepStart = "keep_start"
    /// Keep its last `seq_len` tokens.
    case keepEnd = "keep_end"
}
