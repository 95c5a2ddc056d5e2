import Runtime

/// Keeps documents written mostly in the allowed Unicode scripts and, optionally, documents that
/// look English by their stop words.
///
/// Limits: the script of a letter comes from its code-point block (the main blocks of each
/// script, not Unicode's full Scripts.txt), so rare letters in supplementary blocks count as
/// `other`. Japanese text mixes Han, Hiragana and Katakana, which count separately: allow all
/// three for Japanese. The English score is the fraction of words that are common English
/// function words; it tells English from other Latin-script languages on running prose of a
/// few dozen words, but not on word lists, code, or very short texts.
public struct ScriptFilter: CleaningOperator {
    public enum Script: String, ConfigChoice, Comparable {
        case latin, greek, cyrillic, armenian, hebrew, arabic, devanagari, bengali, tamil, thai, georgian
        case hangul, hiragana, katakana, han, other

        public static func < (left: Script, right: Script) -> Bool {
            allCases.firstIndex(of: left) ?? 0 < allCases.firstIndex(of: right) ?? 0
        }

        /// The script of a letter by its block.
        static func of(_ value: UInt32) -> Script {
            switch value {
            case 0x41...0x5A, 0x61...0x7A, 0xC0...0x24F, 0x1E00...0x1EFF, 0x2C60...0x2C7F, 0xA720...0xA7FF, 0xFF21...0xFF5A: .latin
            case 0x370...0x3FF, 0x1F00...0x1FFF: .greek
            case 0x400...0x52F, 0x1C80...0x1C8F, 0x2DE0...0x2DFF, 0xA640...0xA69F: .cyrillic
            case 0x530...0x58F: .armenian
            case 0x590...0x5FF: .hebrew
            case 0x600...0x6FF, 0x750...0x77F, 0x8A0...0x8FF, 0xFB50...0xFDFF, 0xFE70...0xFEFF: .arabic
            case 0x900...0x97F: .devanagari
            case 0x980...0x9FF: .bengali
            case 0xB80...0xBFF: .tamil
            case 0xE00...0xE7F: .thai
            case 0x10A0...0x10FF: .georgian
            case 0x1100...0x11FF, 0x3130...0x318F, 0xAC00...0xD7AF: .hangul
            case 0x3040...0x309F: .hiragana
            case 0x30A0...0x30FF, 0xFF66...0xFF9F: .katakana
            case 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xF900...0xFAFF, 0x20000...0x2FA1F: .han
            default: .other
            }
        }
    }

    public enum Language: String, ConfigChoice {
        /// No language check.
        case any
        /// Require `min_english_score` of the words to be English function words.
        case english
    }

    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        public var allowedScripts: [Script] = [.latin]
        /// The letters in allowed scripts, per letter, must reach this.
        public var minScriptFraction = 0.65
        public var language: Language = .any
        public var minEnglishScore = 0.1

        public init() {}

        enum CodingKeys: String, CodingKey {
            case allowedScripts = "allowed_scripts", minScriptFraction = "min_script_fraction"
            case language, minEnglishScore = "min_english_score"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Config()
            allowedScripts = try container.decode(.allowedScripts, default: defaults.allowedScripts)
            minScriptFraction = try container.decode(.minScriptFraction, default: defaults.minScriptFraction)
            language = try container.decode(.language, default: defaults.language)
            minEnglishScore = try container.decode(.minEnglishScore, default: defaults.minEnglishScore)
        }

        public func validate() throws(ConfigError) {
            guard !allowedScripts.isEmpty else { throw .invalid("allowed_scripts", "[]", "name at least one script") }
            guard (0...1).contains(minScriptFraction) else { throw .invalid("min_script_fraction", minScriptFraction, "must be between 0 and 1") }
            guard (0...1).contains(minEnglishScore) else { throw .invalid("min_english_score", minEnglishScore, "must be between 0 and 1") }
        }
    }

    public static let name = "script_language"
    public var name: String { Self.name }
    public let config: Config
    private let allowed: Set<Script>

    public init(_ config: Config = Config()) {
        self.config = config
        allowed = Set(config.allowedScripts)
    }

    /// Common English function words (lower case).
    static let englishWords: Set<UInt64> = Set(("the of and to a in is it that was for on are as with be at by this had not "
        + "but from or have an they which one you were her all she there would their we him been has when who will "
        + "more no if out so said what up its about into than them can only other new some could these two may "
        + "then do first any my now such like our over man me even most made after also did many before must "
        + "through back where much your way well down should because each just those people how too very").split(separator: " ")
        .map { word in TextScanning.withBytes(String(word)) { TextScanning.hash($0, 0..<$0.count) } })

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        TextScanning.withBytes(document.text) { bytes in judge(bytes) }
    }

    private func judge(_ bytes: UnsafeBufferPointer<UInt8>) -> OperatorOutcome {
        var counts = [Script: Int]()
        // ASCII letters are counted apart: a dictionary update per letter would dominate.
        var asciiLetters = 0
        var letters = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x80 {
                if TextScanning.isASCIILetter(byte) { asciiLetters += 1 }
                index += 1
                continue
            }
            let (scalar, length) = TextScanning.scalar(in: bytes, at: index)
            if scalar.properties.isAlphabetic {
                counts[Script.of(scalar.value), default: 0] += 1
                letters += 1
            }
            index += length
        }
        if asciiLetters > 0 { counts[.latin, default: 0] += asciiLetters }
        letters += asciiLetters
        guard letters > 0 else { return .drop("no letters") }
        let allowedLetters = allowed.reduce(0) { $0 + counts[$1, default: 0] }
        let fraction = Double(allowedLetters) / Double(letters)
        if fraction < config.minScriptFraction {
            let dominant = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key ?? .other
            return .drop("script_fraction \(format(fraction)) < min_script_fraction \(format(config.minScriptFraction)) (mostly \(dominant.rawValue))")
        }
        if config.language == .english {
            let words = TextScanning.words(in: bytes)
            let english = words.reduce(0) { count, word in
                count + (Self.englishWords.contains(TextScanning.hash(bytes, stripped(bytes, word), foldCase: true)) ? 1 : 0)
            }
            let score = Double(english) / Double(max(words.count, 1))
            if score < config.minEnglishScore {
                return .drop("english_score \(format(score)) < min_english_score \(format(config.minEnglishScore))")
            }
        }
        return .keep
    }

    private func stripped(_ bytes: UnsafeBufferPointer<UInt8>, _ word: Range<Int>) -> Range<Int> {
        var lower = word.lowerBound, upper = word.upperBound
        while lower < upper && bytes[lower] < 0x80 && !TextScanning.isASCIIAlphanumeric(bytes[lower]) { lower += 1 }
        while upper > lower && bytes[upper - 1] < 0x80 && !TextScanning.isASCIIAlphanumeric(bytes[upper - 1]) { upper -= 1 }
        return lower..<upper
    }
}
