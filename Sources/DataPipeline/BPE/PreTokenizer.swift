/// Splits text into the pieces BPE merges within, exactly as the GPT-4 (`cl100k_base`) and
/// Llama-3 split pattern does:
///
///     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
///
/// A hand-written scanner over UTF-8 bytes rather than a regex engine: Swift `Regex` runs this
/// pattern at ~3 MB/s and ICU at ~30 MB/s, too slow next to tiktoken's whole encode (14 MB/s).
/// Each branch below is one alternative of the pattern, tried in the pattern's order, with the
/// backtracking the regex would do written out (the whitespace branches). Bytes that are not
/// valid UTF-8 count as one "other" character each (the regex never sees them; byte-level BPE
/// still round-trips them exactly).
public struct PreTokenizer: Sendable {
    /// The pattern this scanner implements, as written into tokenizer.json.
    public static let pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The character classes the pattern distinguishes.
    enum Kind: UInt8 {
        case letter, number, newline, space, other
    }

    public init() {}

    /// Calls `body` with the byte range of every piece of `bytes`, in order; the ranges cover
    /// `bytes` without gaps.
    public func split(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        let end = bytes.count
        var start = 0
        while start < end {
            let stop = pieceEnd(bytes, from: start)
            body(start..<stop)
            start = stop
        }
    }

    /// The pieces of `bytes` as arrays (for tests and small inputs).
    public func pieces(_ bytes: [UInt8]) -> [[UInt8]] {
        var result = [[UInt8]]()
        bytes.withUnsafeBufferPointer { buffer in
            split(buffer) { range in result.append(Array(buffer[range])) }
        }
        return result
    }

    /// The end of the piece that starts at `start`.
    func pieceEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        let end = bytes.count
        let first = bytes[start]
        // 1. Contractions, case-insensitive ('ſ' folds to 's' in the regex engines).
        if first == 0x27, start + 1 < end {
            let next = bytes[start + 1] | 0x20
            switch next {
            case 0x73, 0x74, 0x6D, 0x64: if bytes[start + 1] < 0x80 { return start + 2 }  // s t m d
            case 0x72, 0x76:  // r v, then e
                if start + 2 < end, bytes[start + 2] | 0x20 == 0x65, bytes[start + 1] < 0x80 { return start + 3 }
            case 0x6C:  // l, then l
                if start + 2 < end, bytes[start + 2] | 0x20 == 0x6C, bytes[start + 1] < 0x80 { return start + 3 }
            default: break
            }
            if bytes[start + 1] == 0xC5, start + 2 < end, bytes[start + 2] == 0xBF { return start + 3 }  // ſ
        }
        let (kind, length) = Self.classify(bytes, at: start)
        switch kind {
        case .letter:
            // 2. Letters.
            return scan(bytes, from: start + length, while: .letter)
        case .number:
            // 3. One to three digits.
            var position = start + length
            for _ in 0..<2 where position < end {
                let (nextKind, nextLength) = Self.classify(bytes, at: position)
                guard nextKind == .number else { break }
                position += nextLength
            }
            return position
        case .space, .other:
            // 2. One non-letter, non-number, non-newline character before letters.
            if start + length < end, Self.classify(bytes, at: start + length).kind == .letter {
                return scan(bytes, from: start + length, while: .letter)
            }
            // 4. Punctuation run, after an optional space, then newlines.
            if kind == .other {
                return scan(bytes, from: scan(bytes, from: start + length, while: .other), while: .newline)
            }
            if first == 0x20, start + 1 < end, Self.classify(bytes, at: start + 1).kind == .other {
                return scan(bytes, from: scan(bytes, from: start + 1, while: .other), while: .newline)
            }
            return whitespaceEnd(bytes, from: start)
        case .newline:
            return whitespaceEnd(bytes, from: start)
        }
    }

    /// Branches 5 to 7 for a whitespace run starting at `start`.
    private func whitespaceEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        let end = bytes.count
        var position = start
        var afterLastNewline = -1
        var lastCharacterStart = start
        while position < end {
            let (kind, length) = Self.classify(bytes, at: position)
            guard kind == .space || kind == .newline else { break }
            if kind == .newline { afterLastNewline = position + length }
            lastCharacterStart = position
            position += length
        }
        // 5. \s*[\r\n]+ : up to and including the run's last newline.
        if afterLastNewline >= 0 { return afterLastNewline }
        // 6. \s+(?!\S) : the whole run at the end of the text, else all but its last character
        // (which then leads the next piece, e.g. the space of " word").
        if position == end || lastCharacterStart == start { return position }  // 7. \s+
        return lastCharacterStart
    }

    private func scan(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, while wanted: Kind) -> Int {
        var position = start
        while position < bytes.count {
            let (kind, length) = Self.classify(bytes, at: position)
            guard kind == wanted else { break }
            position += length
        }
        return position
    }

    /// The class and byte length of the character at `position`.
    @inline(__always)
    static func classify(_ bytes: UnsafeBufferPointer<UInt8>, at position: Int) -> (kind: Kind, length: Int) {
        let lead = bytes[position]
        if lead < 0x80 { return (asciiKinds[Int(lead)], 1) }
        let (scalar, length) = decodeScalar(bytes, at: position)
        guard let scalar else { return (.other, 1) }
        if scalar < 0x10000 { return (basicPlaneKinds[Int(scalar)], length) }
        return (kind(of: scalar), length)
    }

    /// Decodes the multi-byte UTF-8 sequence at `position`; nil (length 1) when it is invalid.
    @inline(__always)
    static func decodeScalar(_ bytes: UnsafeBufferPointer<UInt8>, at position: Int) -> (UInt32?, Int) {
        let lead = UInt32(bytes[position])
        let remaining = bytes.count - position
        @inline(__always) func continuation(_ offset: Int) -> UInt32? {
            let byte = bytes[position + offset]
            return byte & 0xC0 == 0x80 ? UInt32(byte & 0x3F) : nil
        }
        switch lead {
        case 0xC2...0xDF:
            guard remaining >= 2, let b1 = continuation(1) else { return (nil, 1) }
            return ((lead & 0x1F) << 6 | b1, 2)
        case 0xE0...0xEF:
            guard remaining >= 3, let b1 = continuation(1), let b2 = continuation(2) else { return (nil, 1) }
            let value = (lead & 0x0F) << 12 | b1 << 6 | b2
            guard value >= 0x800, !(0xD800...0xDFFF).contains(value) else { return (nil, 1) }
            return (value, 3)
        case 0xF0...0xF4:
            guard remaining >= 4, let b1 = continuation(1), let b2 = continuation(2), let b3 = continuation(3) else { return (nil, 1) }
            let value = (lead & 0x07) << 18 | b1 << 12 | b2 << 6 | b3
            guard (0x10000...0x10FFFF).contains(value) else { return (nil, 1) }
            return (value, 4)
        default:
            return (nil, 1)
        }
    }

    static func kind(of value: UInt32) -> Kind {
        if value == 0x0A || value == 0x0D { return .newline }
        guard let scalar = Unicode.Scalar(value) else { return .other }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    private static let asciiKinds: [Kind] = (0..<128).map { kind(of: UInt32($0)) }
    /// Classes of U+0000...U+FFFF, computed once (a property lookup per character is slow).
    private static let basicPlaneKinds: [Kind] = (0..<0x10000).map { kind(of: UInt32($0)) }
}
