import DataPipeline

/// What became of a tokenized pair or KTO sample fitted to rows of `seq_len` tokens.
public enum PreferenceFit<Sample: Sendable & Equatable>: Sendable, Equatable {
    /// It fits as it is.
    case kept(Sample)
    /// It was longer than a row and cut (`keep_start`/`keep_end`).
    case truncated(Sample)
    /// Left out as longer than a row (`drop`, or a cut `keep_end` cannot make).
    case tooLong
    /// Left out with nothing to learn from: no supervised token (after position 0) on a side.
    case unsupervised
}

/// How many samples fitting kept, cut and left out, for the run to print.
public struct PreferenceFitCounts: Sendable, Equatable {
    /// Kept whole.
    public var kept = 0
    /// Kept, cut to a row.
    public var truncated = 0
    public var tooLong = 0
    public var unsupervised = 0

    public init() {}

    /// Adds `other`'s counts (a run's train and eval sets).
    public mutating func add(_ other: PreferenceFitCounts) {
        kept += other.kept
        truncated += other.truncated
        tooLong += other.tooLong
        unsupervised += other.unsupervised
    }

    /// Counts `fit`, and returns the sample it keeps, if any.
    public mutating func count<Sample>(_ fit: PreferenceFit<Sample>) -> Sample? {
        switch fit {
        case .kept(let sample): kept += 1; return sample
        case .truncated(let sample): truncated += 1; return sample
        case .tooLong: tooLong += 1; return nil
        case .unsupervised: unsupervised += 1; return nil
        }
    }

    /// "118 pairs kept (3 of them truncated); dropped: 2 longer than seq_len 256, 1 with nothing supervised".
    public func summary(noun: String, sequenceLength: Int) -> String {
        var text = "\(kept + truncated) \(noun) kept"
        if truncated > 0 { text += " (\(truncated) of them truncated)" }
        var dropped: [String] = []
        if tooLong > 0 { dropped.append("\(tooLong) longer than seq_len \(sequenceLength)") }
        if unsupervised > 0 { dropped.append("\(unsupervised) with nothing supervised") }
        return dropped.isEmpty ? text : text + "; dropped: " + dropped.joined(separator: ", ")
    }
}

extension TokenizedPair {
    /// This pair fitted to rows of `sequenceLength` tokens, both sides alike so they keep one
    /// prompt: `drop` leaves out a pair with a side longer than a row; `keep_start` cuts each
    /// side's end (a completion may lose its end); `keep_end` cuts the same number of tokens
    /// from the start of both sides, prompt tokens only, and leaves out a pair whose prompt is
    /// shorter than the cut. A pair with either side left without a supervised token (after
    /// position 0) is left out.
    public func fitted(to sequenceLength: Int, truncation: SFTTruncation) -> PreferenceFit<TokenizedPair> {
        let overflow = max(chosen.ids.count, rejected.ids.count) - sequenceLength
        if overflow > 0 && (truncation == .drop || (truncation == .keepEnd && overflow > promptLength)) { return .tooLong }
        func fitted(_ side: TokenizedSample) -> TokenizedSample? {
            let length = truncation == .keepEnd ? side.ids.count - max(overflow, 0) : sequenceLength
            switch side.fitted(to: length, truncation: truncation) {
            case .kept(let sample), .truncated(let sample): return sample
            case .dropped: return nil
            }
        }
        guard let chosen = fitted(chosen), let rejected = fitted(rejected) else { return .unsupervised }
        let pair = TokenizedPair(source: source, chosen: chosen, rejected: rejected, margin: margin)
        return overflow > 0 ? .truncated(pair) : .kept(pair)
    }
}

extension TokenizedPair {
    /// This pair fitted to a row as packing places it: both sequences in one row of
    /// `sequenceLength` tokens, or, when together they are longer, each side fitted to half a row.
    public func fittedToRow(_ sequenceLength: Int, truncation: SFTTruncation) -> PreferenceFit<TokenizedPair> {
        let fits = chosen.ids.count + rejected.ids.count <= sequenceLength
        return fitted(to: fits ? sequenceLength : sequenceLength / 2, truncation: truncation)
    }
}

extension TokenizedUnpaired {
    /// This sample fitted to rows of `sequenceLength` tokens as an SFT sample is
    /// (`TokenizedSample.fitted(to:truncation:)`).
    public func fitted(to sequenceLength: Int, truncation: SFTTruncation) -> PreferenceFit<TokenizedUnpaired> {
        switch sample.fitted(to: sequenceLength, truncation: truncation) {
        case .kept(let fitted): return .kept(TokenizedUnpaired(source: source, sample: fitted, desirable: desirable))
        case .truncated(let fitted): return .truncated(TokenizedUnpaired(source: source, sample: fitted, desirable: desirable))
        case .dropped: return truncation == .drop && sample.ids.count > sequenceLength ? .tooLong : .unsupervised
        }
    }
}
