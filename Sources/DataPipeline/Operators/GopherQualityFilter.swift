import Runtime

/// The quality rules of Gopher (Rae et al. 2021, appendix A.1.1), with the paper's thresholds
/// as defaults. Words are runs of non-whitespace; a word with no letter or digit is a symbol and
/// does not count as a word; a word's length and stop-word match ignore ASCII punctuation at its
/// ends (`"end."` is `end`).
public struct GopherQualityFilter: CleaningOperator {
    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        public var minWords = 50
        public var maxWords = 100_000
        public var minMeanWordLength = 3.0
        public var maxMeanWordLength = 10.0
        /// (`#` + `...` + `…`) per word.
        public var maxSymbolWordRatio = 0.1
        /// Lines ending in `...` or `…`, per non-empty line.
        public var maxEllipsisLineRatio = 0.3
        /// Lines starting with `•`, `-`, `*` or `·`, per non-empty line.
        public var maxBulletLineRatio = 0.9
        /// Words containing at least one letter, per word (symbols included).
        public var minAlphabeticWordRatio = 0.8
        /// Occurrences of the stop words required (0 turns the rule off).
        public var minStopWords = 2
        public var stopWords = ["the", "be", "to", "of", "and", "that", "have", "with"]

        public init() {}

        enum CodingKeys: String, CodingKey {
            case minWords = "min_words", maxWords = "max_words"
            case minMeanWordLength = "min_mean_word_length", maxMeanWordLength = "max_mean_word_length"
            case maxSymbolWordRatio = "max_symbol_word_ratio", maxEllipsisLineRatio = "max_ellipsis_line_ratio"
            case maxBulletLineRatio = "max_bullet_line_ratio", minAlphabeticWordRatio = "min_alphabetic_word_ratio"
            case minStopWords = "min_stop_words", stopWords = "stop_words"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Config()
            minWords = try container.decode(.minWords, default: defaults.minWords)
            maxWords = try container.decode(.maxWords, default: defaults.maxWords)
            minMeanWordLength = try container.decode(.minMeanWordLength, default: defaults.minMeanWordLength)
            maxMeanWordLength = try container.decode(.maxMeanWordLength, default: defaults.maxMeanWordLength)
            maxSymbolWordRatio = try container.decode(.maxSymbolWordRatio, default: defaults.maxSymbolWordRatio)
            maxEllipsisLineRatio = try container.decode(.maxEllipsisLineRatio, default: defaults.maxEllipsisLineRatio)
            maxBulletLineRatio = try container.decode(.maxBulletLineRatio, default: defaults.maxBulletLineRatio)
            minAlphabeticWordRatio = try container.decode(.minAlphabeticWordRatio, default: defaults.minAlphabeticWordRatio)
            minStopWords = try container.decode(.minStopWords, default: defaults.minStopWords)
            stopWords = try container.decode(.stopWords, default: defaults.stopWords)
        }

        public func validate() throws(ConfigError) {
            guard minWords >= 0 else { throw .invalid("min_words", minWords, "must be at least 0") }
            guard maxWords >= minWords else { throw .invalid("max_words", maxWords, "must be at least min_words \(minWords)") }
            guard maxMeanWordLength >= minMeanWordLength else {
                throw .invalid("max_mean_word_length", maxMeanWordLength, "must be at least min_mean_word_length \(minMeanWordLength)")
            }
            for (key, value) in [("max_symbol_word_ratio", maxSymbolWordRatio), ("max_ellipsis_line_ratio", maxEllipsisLineRatio),
                                 ("max_bullet_line_ratio", maxBulletLineRatio), ("min_alphabetic_word_ratio", minAlphabeticWordRatio)]
            where !(0...1).contains(value) {
                throw .invalid(key, value, "must be between 0 and 1")
            }
            guard minStopWords >= 0 else { throw .invalid("min_stop_words", minStopWords, "must be at least 0") }
        }
    }

    public static let name = "gopher_quality"
    public var name: String { Self.name }
    public let config: Config
    private let stopWordHashes: Set<UInt64>

    public init(_ config: Config = Config()) {
        self.config = config
        stopWordHashes = Set(config.stopWords.map { word in
            TextScanning.withBytes(word) { TextScanning.hash($0, 0..<$0.count, foldCase: true) }
        })
    }

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        TextScanning.withBytes(document.text) { bytes in judge(bytes) }
    }

    private func judge(_ bytes: UnsafeBufferPointer<UInt8>) -> OperatorOutcome {
        var wordCount = 0, allWords = 0, alphabeticWords = 0, stopWords = 0, symbols = 0, lengthSum = 0
        for word in TextScanning.words(in: bytes) {
            allWords += 1
            let (hasLetter, hasDigit) = letterAndDigit(bytes, word)
            if hasLetter { alphabeticWords += 1 }
            symbols += symbolCount(bytes, word)
            guard hasLetter || hasDigit else { continue }
            wordCount += 1
            let core = stripPunctuation(bytes, word)
            lengthSum += TextScanning.scalarCount(in: bytes, range: core)
            if stopWordHashes.contains(TextScanning.hash(bytes, core, foldCase: true)) { stopWords += 1 }
        }
        if wordCount < config.minWords { return .drop("word_count \(wordCount) < min_words \(config.minWords)") }
        if wordCount > config.maxWords { return .drop("word_count \(wordCount) > max_words \(config.maxWords)") }
        let meanLength = Double(lengthSum) / Double(max(wordCount, 1))
        if meanLength < config.minMeanWordLength {
            return .drop("mean_word_length \(format(meanLength)) < min_mean_word_length \(format(config.minMeanWordLength))")
        }
        if meanLength > config.maxMeanWordLength {
            return .drop("mean_word_length \(format(meanLength)) > max_mean_word_length \(format(config.maxMeanWordLength))")
        }
        let symbolRatio = Double(symbols) / Double(max(wordCount, 1))
        if symbolRatio > config.maxSymbolWordRatio {
            return .drop("symbol_word_ratio \(format(symbolRatio)) > max_symbol_word_ratio \(format(config.maxSymbolWordRatio))")
        }
        var lineCount = 0, bulletLines = 0, ellipsisLines = 0
        for line in TextScanning.lines(in: bytes) {
            let trimmed = TextScanning.trimmed(line, in: bytes)
            guard !trimmed.isEmpty else { continue }
            lineCount += 1
            if startsWithBullet(bytes, trimmed) { bulletLines += 1 }
            if endsWithEllipsis(bytes, trimmed) { ellipsisLines += 1 }
        }
        let bulletRatio = Double(bulletLines) / Double(max(lineCount, 1))
        if bulletRatio > config.maxBulletLineRatio {
            return .drop("bullet_line_ratio \(format(bulletRatio)) > max_bullet_line_ratio \(format(config.maxBulletLineRatio))")
        }
        let ellipsisRatio = Double(ellipsisLines) / Double(max(lineCount, 1))
        if ellipsisRatio > config.maxEllipsisLineRatio {
            return .drop("ellipsis_line_ratio \(format(ellipsisRatio)) > max_ellipsis_line_ratio \(format(config.maxEllipsisLineRatio))")
        }
        let alphabeticRatio = Double(alphabeticWords) / Double(max(allWords, 1))
        if alphabeticRatio < config.minAlphabeticWordRatio {
            return .drop("alphabetic_word_ratio \(format(alphabeticRatio)) < min_alphabetic_word_ratio \(format(config.minAlphabeticWordRatio))")
        }
        if stopWords < config.minStopWords { return .drop("stop_words \(stopWords) < min_stop_words \(config.minStopWords)") }
        return .keep
    }

    private func letterAndDigit(_ bytes: UnsafeBufferPointer<UInt8>, _ word: Range<Int>) -> (Bool, Bool) {
        var hasDigit = false
        var index = word.lowerBound
        while index < word.upperBound {
            let byte = bytes[index]
            if byte < 0x80 {
                if TextScanning.isASCIILetter(byte) { return (true, true) }
                if TextScanning.isDigit(byte) { hasDigit = true }
                index += 1
            } else {
                let (scalar, length) = TextScanning.scalar(in: bytes, at: index)
                if scalar.properties.isAlphabetic { return (true, hasDigit) }
                if scalar.properties.numericType != nil { hasDigit = true }
                index += length
            }
        }
        return (false, hasDigit)
    }

    /// `#` characters plus `...` and `…` sequences in the word.
    private func symbolCount(_ bytes: UnsafeBufferPointer<UInt8>, _ word: Range<Int>) -> Int {
        var count = 0
        var index = word.lowerBound
        while index < word.upperBound {
            if bytes[index] == 0x23 { count += 1 }
            else if bytes[index] == 0x2E && index + 2 < word.upperBound && bytes[index + 1] == 0x2E && bytes[index + 2] == 0x2E {
                count += 1
                index += 2
            } else if bytes[index] == 0xE2 && index + 2 < word.upperBound && bytes[index + 1] == 0x80 && bytes[index + 2] == 0xA6 {
                count += 1
                index += 2
            }
            index += 1
        }
        return count
    }

    private func stripPunctuation(_ bytes: UnsafeBufferPointer<UInt8>, _ word: Range<Int>) -> Range<Int> {
        func isPunctuation(_ byte: UInt8) -> Bool { byte < 0x80 && !TextScanning.isASCIIAlphanumeric(byte) }
        var lower = word.lowerBound, upper = word.upperBound
        while lower < upper && isPunctuation(bytes[lower]) { lower += 1 }
        while upper > lower && isPunctuation(bytes[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    private func startsWithBullet(_ bytes: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Bool {
        let first = bytes[line.lowerBound]
        if first == 0x2D || first == 0x2A { return true }
        guard first >= 0x80 else { return false }
        let scalar = TextScanning.scalar(in: bytes, at: line.lowerBound).0
        return scalar == "\u{2022}" || scalar == "\u{00B7}" || scalar == "\u{25CF}" || scalar == "\u{25AA}"
    }

    private func endsWithEllipsis(_ bytes: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Bool {
        let end = line.upperBound
        guard line.count >= 3 else { return false }
        return (bytes[end - 1] == 0x2E && bytes[end - 2] == 0x2E && bytes[end - 3] == 0x2E)
            || (bytes[end - 3] == 0xE2 && bytes[end - 2] == 0x80 && bytes[end - 1] == 0xA6)
    }
}

/// A ratio for `removed.jsonl`: three decimals, no trailing zeros noise from Double printing.
func format(_ value: Double) -> String {
    let rounded = (value * 1000).rounded() / 1000
    return rounded == rounded.rounded() ? String(Int(rounded)) : "\(rounded)"
}
