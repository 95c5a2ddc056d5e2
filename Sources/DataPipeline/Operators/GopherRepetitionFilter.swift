import Runtime

/// The repetition rules of Gopher (Rae et al. 2021, table A1), with the paper's thresholds as
/// defaults: documents that repeat lines, paragraphs or word n-grams are dropped.
///
/// - duplicate lines / paragraphs: an element equal to an earlier one is a duplicate; the rules
///   bound duplicates per element and duplicate characters per character of the text. Lines
///   are split at `\n`, paragraphs at blank lines; empty elements do not count.
/// - top n-gram (n = 2, 3, 4): characters of the most frequent word n-gram (its words and the
///   n − 1 spaces between them) times its count, per character of the text; 0 when no n-gram
///   repeats.
/// - duplicate n-grams (n = 5…10): scanning left to right, an n-gram seen before adds its words'
///   characters and the scan jumps past it, else the scan moves one word; the sum per character
///   of the text. This is how datatrove and most Gopher reimplementations read the paper's
///   "fraction of characters in duplicate n-grams": the first occurrence does not count.
/// Words are whitespace-separated and compared by a 64-bit hash (a collision would need two
/// different words with equal FNV-1a hashes in one document).
public struct GopherRepetitionFilter: CleaningOperator {
    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        public var maxDuplicateLineFraction = 0.30
        public var maxDuplicateParagraphFraction = 0.30
        public var maxDuplicateLineCharacterFraction = 0.20
        public var maxDuplicateParagraphCharacterFraction = 0.20
        /// n → the highest allowed character fraction of the most frequent n-gram.
        public var maxTopNGramCharacterFraction: [Int: Double] = [2: 0.20, 3: 0.18, 4: 0.16]
        /// n → the highest allowed character fraction covered by repeated n-grams.
        public var maxDuplicateNGramCharacterFraction: [Int: Double] = [5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10]

        public init() {}

        enum CodingKeys: String, CodingKey {
            case maxDuplicateLineFraction = "max_duplicate_line_fraction"
            case maxDuplicateParagraphFraction = "max_duplicate_paragraph_fraction"
            case maxDuplicateLineCharacterFraction = "max_duplicate_line_character_fraction"
            case maxDuplicateParagraphCharacterFraction = "max_duplicate_paragraph_character_fraction"
            case maxTopNGramCharacterFraction = "max_top_ngram_character_fraction"
            case maxDuplicateNGramCharacterFraction = "max_duplicate_ngram_character_fraction"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Config()
            maxDuplicateLineFraction = try container.decode(.maxDuplicateLineFraction, default: defaults.maxDuplicateLineFraction)
            maxDuplicateParagraphFraction = try container.decode(.maxDuplicateParagraphFraction,
                                                                 default: defaults.maxDuplicateParagraphFraction)
            maxDuplicateLineCharacterFraction = try container.decode(.maxDuplicateLineCharacterFraction,
                                                                     default: defaults.maxDuplicateLineCharacterFraction)
            maxDuplicateParagraphCharacterFraction = try container.decode(.maxDuplicateParagraphCharacterFraction,
                                                                          default: defaults.maxDuplicateParagraphCharacterFraction)
            maxTopNGramCharacterFraction = try container.decode(.maxTopNGramCharacterFraction,
                                                                default: defaults.maxTopNGramCharacterFraction)
            maxDuplicateNGramCharacterFraction = try container.decode(.maxDuplicateNGramCharacterFraction,
                                                                      default: defaults.maxDuplicateNGramCharacterFraction)
        }

        public func validate() throws(ConfigError) {
            for (key, value) in [("max_duplicate_line_fraction", maxDuplicateLineFraction),
                                 ("max_duplicate_paragraph_fraction", maxDuplicateParagraphFraction),
                                 ("max_duplicate_line_character_fraction", maxDuplicateLineCharacterFraction),
                                 ("max_duplicate_paragraph_character_fraction", maxDuplicateParagraphCharacterFraction)]
            where !(0...1).contains(value) {
                throw .invalid(key, value, "must be between 0 and 1")
            }
            for (label, table) in [("max_top_ngram_character_fraction", maxTopNGramCharacterFraction),
                                   ("max_duplicate_ngram_character_fraction", maxDuplicateNGramCharacterFraction)] {
                for (n, value) in table.sorted(by: { $0.key < $1.key }) {
                    guard (1...32).contains(n) else { throw .invalid("\(label).\(n)", n, "n must be between 1 and 32") }
                    guard (0...1).contains(value) else { throw .invalid("\(label).\(n)", value, "must be between 0 and 1") }
                }
            }
        }
    }

    public static let name = "gopher_repetition"
    public var name: String { Self.name }
    public let config: Config

    public init(_ config: Config = Config()) { self.config = config }

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        TextScanning.withBytes(document.text) { bytes in judge(bytes) }
    }

    private func judge(_ bytes: UnsafeBufferPointer<UInt8>) -> OperatorOutcome {
        let totalCharacters = max(TextScanning.scalarCount(in: bytes, range: 0..<bytes.count), 1)
        let paragraphs = Self.duplicates(Self.paragraphs(in: bytes), bytes)
        if paragraphs.fraction > config.maxDuplicateParagraphFraction {
            return .drop(rule("duplicate_paragraph_fraction", paragraphs.fraction, "max_duplicate_paragraph_fraction",
                              config.maxDuplicateParagraphFraction))
        }
        let paragraphCharacters = Double(paragraphs.characters) / Double(totalCharacters)
        if paragraphCharacters > config.maxDuplicateParagraphCharacterFraction {
            return .drop(rule("duplicate_paragraph_character_fraction", paragraphCharacters,
                              "max_duplicate_paragraph_character_fraction", config.maxDuplicateParagraphCharacterFraction))
        }
        let lines = Self.duplicates(TextScanning.lines(in: bytes), bytes)
        if lines.fraction > config.maxDuplicateLineFraction {
            return .drop(rule("duplicate_line_fraction", lines.fraction, "max_duplicate_line_fraction", config.maxDuplicateLineFraction))
        }
        let lineCharacters = Double(lines.characters) / Double(totalCharacters)
        if lineCharacters > config.maxDuplicateLineCharacterFraction {
            return .drop(rule("duplicate_line_character_fraction", lineCharacters, "max_duplicate_line_character_fraction",
                              config.maxDuplicateLineCharacterFraction))
        }
        let words = TextScanning.words(in: bytes)
        let hashes = words.map { TextScanning.hash(bytes, $0) }
        let lengths = words.map { TextScanning.scalarCount(in: bytes, range: $0) }
        for (n, limit) in config.maxTopNGramCharacterFraction.sorted(by: { $0.key < $1.key }) {
            let fraction = Double(Self.topNGramCharacters(n, hashes, lengths)) / Double(totalCharacters)
            if fraction > limit {
                return .drop(rule("top_\(n)gram_character_fraction", fraction, "max_top_ngram_character_fraction.\(n)", limit))
            }
        }
        for (n, limit) in config.maxDuplicateNGramCharacterFraction.sorted(by: { $0.key < $1.key }) {
            let fraction = Double(Self.duplicateNGramCharacters(n, hashes, lengths)) / Double(totalCharacters)
            if fraction > limit {
                return .drop(rule("duplicate_\(n)gram_character_fraction", fraction, "max_duplicate_ngram_character_fraction.\(n)", limit))
            }
        }
        return .keep
    }

    private func rule(_ measured: String, _ value: Double, _ key: String, _ limit: Double) -> String {
        "\(measured) \(format(value)) > \(key) \(format(limit))"
    }

    /// Paragraphs: runs of lines separated by one or more blank lines.
    static func paragraphs(in bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var paragraphs = [Range<Int>]()
        var start: Int?
        var end = 0
        for line in TextScanning.lines(in: bytes) {
            if TextScanning.trimmed(line, in: bytes).isEmpty {
                if let first = start { paragraphs.append(first..<end); start = nil }
            } else {
                if start == nil { start = line.lowerBound }
                end = line.upperBound
            }
        }
        if let first = start { paragraphs.append(first..<end) }
        return paragraphs
    }

    /// Duplicates among non-empty elements: their fraction of the elements, and their characters.
    static func duplicates(_ elements: [Range<Int>], _ bytes: UnsafeBufferPointer<UInt8>) -> (fraction: Double, characters: Int) {
        var seen = Set<UInt64>()
        var count = 0, duplicateCount = 0, duplicateCharacters = 0
        for element in elements {
            let trimmed = TextScanning.trimmed(element, in: bytes)
            guard !trimmed.isEmpty else { continue }
            count += 1
            if !seen.insert(TextScanning.hash(bytes, trimmed)).inserted {
                duplicateCount += 1
                duplicateCharacters += TextScanning.scalarCount(in: bytes, range: element)
            }
        }
        return (Double(duplicateCount) / Double(max(count, 1)), duplicateCharacters)
    }

    static func nGramKey(_ hashes: [UInt64], _ start: Int, _ n: Int) -> UInt64 {
        var key: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(n)
        for index in start..<start + n { key = (key ^ hashes[index]) &* 0xFF51_AFD7_ED55_8CCD; key ^= key >> 29 }
        return key
    }

    static func topNGramCharacters(_ n: Int, _ hashes: [UInt64], _ lengths: [Int]) -> Int {
        guard hashes.count >= n else { return 0 }
        var counts = [UInt64: (count: Int, start: Int)](minimumCapacity: hashes.count - n + 1)
        var best = (count: 0, start: 0)
        for start in 0...(hashes.count - n) {
            let key = nGramKey(hashes, start, n)
            let entry = counts[key].map { ($0.count + 1, $0.start) } ?? (1, start)
            counts[key] = entry
            // The most frequent n-gram; ties go to the earliest, so the result is deterministic.
            if entry.0 > best.count || (entry.0 == best.count && entry.1 < best.start) { best = entry }
        }
        guard best.count > 1 else { return 0 }
        return best.count * (lengths[best.start..<best.start + n].reduce(0, +) + n - 1)
    }

    static func duplicateNGramCharacters(_ n: Int, _ hashes: [UInt64], _ lengths: [Int]) -> Int {
        guard hashes.count >= n else { return 0 }
        var seen = Set<UInt64>(minimumCapacity: hashes.count - n + 1)
        var repeated = 0
        var start = 0
        while start <= hashes.count - n {
            if seen.insert(nGramKey(hashes, start, n)).inserted {
                start += 1
            } else {
                repeated += lengths[start..<start + n].reduce(0, +)
                start += n
            }
        }
        return repeated
    }
}
