import Runtime

/// The C4 cleaning rules (Raffel et al. 2020, §2.2), line by line: keep only lines that end in
/// terminal punctuation and have enough words; drop lines that mention JavaScript or look like
/// policy boilerplate; drop the whole document when it contains "lorem ipsum" or a curly brace
/// (code, in C4's view) or when too few sentences remain. Each rule can be switched off.
public struct C4Filter: CleaningOperator {
    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        /// Keep only lines ending in `.`, `!`, `?` or `"` (after trailing whitespace).
        public var requireTerminalPunctuation = true
        /// Drop lines with fewer words than this (0 = off).
        public var minWordsPerLine = 3
        /// Drop lines with a word longer than this many bytes (0 = off).
        public var maxWordLength = 1000
        /// Drop lines containing "javascript" (any case).
        public var dropJavascriptLines = true
        /// Drop lines containing a boilerplate phrase (any case).
        public var dropBoilerplateLines = true
        public var boilerplatePhrases = ["terms of use", "privacy policy", "cookie policy", "uses cookies",
                                         "use of cookies", "use cookies", "all rights reserved"]
        /// Drop the document if it contains "lorem ipsum" (any case).
        public var dropLoremIpsum = true
        /// Drop the document if it contains `{` (C4 drops code this way; off for code-bearing corpora).
        public var dropCurlyBrace = true
        /// Drop the document if fewer sentences remain (sentences end in `.`, `!` or `?`; 0 = off).
        public var minSentences = 5

        public init() {}

        enum CodingKeys: String, CodingKey {
            case requireTerminalPunctuation = "require_terminal_punctuation", minWordsPerLine = "min_words_per_line"
            case maxWordLength = "max_word_length", dropJavascriptLines = "drop_javascript_lines"
            case dropBoilerplateLines = "drop_boilerplate_lines", boilerplatePhrases = "boilerplate_phrases"
            case dropLoremIpsum = "drop_lorem_ipsum", dropCurlyBrace = "drop_curly_brace", minSentences = "min_sentences"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Config()
            requireTerminalPunctuation = try container.decode(.requireTerminalPunctuation, default: defaults.requireTerminalPunctuation)
            minWordsPerLine = try container.decode(.minWordsPerLine, default: defaults.minWordsPerLine)
            maxWordLength = try container.decode(.maxWordLength, default: defaults.maxWordLength)
            dropJavascriptLines = try container.decode(.dropJavascriptLines, default: defaults.dropJavascriptLines)
            dropBoilerplateLines = try container.decode(.dropBoilerplateLines, default: defaults.dropBoilerplateLines)
            boilerplatePhrases = try container.decode(.boilerplatePhrases, default: defaults.boilerplatePhrases)
            dropLoremIpsum = try container.decode(.dropLoremIpsum, default: defaults.dropLoremIpsum)
            dropCurlyBrace = try container.decode(.dropCurlyBrace, default: defaults.dropCurlyBrace)
            minSentences = try container.decode(.minSentences, default: defaults.minSentences)
        }

        public func validate() throws(ConfigError) {
            guard minWordsPerLine >= 0 else { throw .invalid("min_words_per_line", minWordsPerLine, "must be at least 0") }
            guard maxWordLength >= 0 else { throw .invalid("max_word_length", maxWordLength, "must be at least 0") }
            guard minSentences >= 0 else { throw .invalid("min_sentences", minSentences, "must be at least 0") }
            if let index = boilerplatePhrases.firstIndex(where: \.isEmpty) {
                throw .invalid("boilerplate_phrases.\(index)", "''", "a phrase must not be empty")
            }
        }
    }

    public static let name = "c4"
    public var name: String { Self.name }
    public let config: Config
    private let phrases: [[UInt8]]

    public init(_ config: Config = Config()) {
        self.config = config
        phrases = config.boilerplatePhrases.map { Array($0.lowercased().utf8) }
    }

    private static let javascript = Array("javascript".utf8)
    private static let loremIpsum = Array("lorem ipsum".utf8)

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        let result: (OperatorOutcome, [UInt8]?, Int, Int) = TextScanning.withBytes(document.text) { bytes in
            let whole = 0..<bytes.count
            if config.dropLoremIpsum && TextScanning.contains(Self.loremIpsum, in: bytes, range: whole) {
                return (.drop("contains 'lorem ipsum'"), nil, 0, 0)
            }
            if config.dropCurlyBrace && bytes.contains(0x7B) { return (.drop("contains '{'"), nil, 0, 0) }
            // Kept lines are copied as they are (indentation included) and blank lines stay, so
            // a document that loses no line comes out byte for byte the same.
            var output = [UInt8]()
            output.reserveCapacity(bytes.count)
            var removedCharacters = 0, removedLines = 0, keptLines = 0
            var previousBlank = true
            for line in TextScanning.lines(in: bytes) {
                let trimmed = TextScanning.trimmed(line, in: bytes)
                if trimmed.isEmpty {
                    if !previousBlank { output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[line])); output.append(0x0A) }
                    previousBlank = true
                } else if keeps(bytes, trimmed) {
                    output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[line]))
                    output.append(0x0A)
                    keptLines += 1
                    previousBlank = false
                } else {
                    removedLines += 1
                    removedCharacters += TextScanning.scalarCount(in: bytes, range: line)
                }
            }
            // Blank lines left at the end by removed lines go; the input's final newline (or its
            // absence) is kept.
            while output.count >= 2 && output[output.count - 1] == 0x0A && output[output.count - 2] == 0x0A { output.removeLast() }
            if bytes.last != 0x0A && output.last == 0x0A { output.removeLast() }
            if keptLines == 0 { output.removeAll() }
            if output.isEmpty { return (.drop("no line passes the line rules"), nil, 0, 0) }
            let sentences = sentenceCount(output)
            if sentences < config.minSentences {
                return (.drop("sentences \(sentences) < min_sentences \(config.minSentences)"), nil, 0, 0)
            }
            return (.keep, removedLines == 0 ? nil : output, removedCharacters, removedLines)
        }
        let (outcome, output, removedCharacters, removedLines) = result
        if let output {
            document.text = String(decoding: output, as: UTF8.self)
            effect.charactersChanged += removedCharacters
            if removedLines > 0 { effect.replacements["lines_removed", default: 0] += removedLines }
        }
        return outcome
    }

    private func keeps(_ bytes: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> Bool {
        guard !line.isEmpty else { return false }
        if config.requireTerminalPunctuation {
            let last = bytes[line.upperBound - 1]
            guard last == 0x2E || last == 0x21 || last == 0x3F || last == 0x22 else { return false }
        }
        if config.minWordsPerLine > 0 || config.maxWordLength > 0 {
            let words = TextScanning.words(in: UnsafeBufferPointer(rebasing: bytes[line]))
            if words.count < config.minWordsPerLine { return false }
            if config.maxWordLength > 0 && words.contains(where: { $0.count > config.maxWordLength }) { return false }
        }
        if config.dropJavascriptLines && TextScanning.contains(Self.javascript, in: bytes, range: line) { return false }
        if config.dropBoilerplateLines && phrases.contains(where: { TextScanning.contains($0, in: bytes, range: line) }) {
            return false
        }
        return true
    }

    /// Sentence ends: a run of `.`, `!`, `?` followed by whitespace or the end of the text.
    private func sentenceCount(_ bytes: [UInt8]) -> Int {
        var count = 0
        for index in bytes.indices where bytes[index] == 0x2E || bytes[index] == 0x21 || bytes[index] == 0x3F {
            let next = index + 1 < bytes.count ? bytes[index + 1] : 0x20
            if TextScanning.isWhitespace(next) || next == 0x22 { count += 1 }
        }
        return count
    }
}
