import Runtime

/// A cleaning recipe: the operators `meshlm data clean` applies, in order, each with its options
/// (docs/data.md). In YAML, a list of one-key mappings, like Data-Juicer's `process`:
///
/// ```yaml
/// operators:
///   - unicode_normalize: {form: nfc}
///   - gopher_quality: {min_words: 20}
///   - pii_scrub: {}
/// ```
public struct CleaningRecipe: Codable, Sendable, Equatable, ValidatedConfig {
    public var operators: [OperatorSpec]

    public init(operators: [OperatorSpec]) { self.operators = operators }

    enum CodingKeys: String, CodingKey { case operators }

    public func validate() throws(ConfigError) {
        guard !operators.isEmpty else {
            throw ConfigError(key: "operators", message: "the recipe lists no operators (known: \(OperatorSpec.names.joined(separator: ", ")))")
        }
        for (index, spec) in operators.enumerated() {
            do {
                try spec.validate()
            } catch {
                throw ConfigError(key: "operators.\(index).\(spec.name).\(error.key)", message: error.message)
            }
        }
    }

    /// Reads and checks a recipe file (unknown keys and operators are errors naming them).
    public static func load(path: String) throws(ConfigError) -> CleaningRecipe {
        try ConfigLoader.load(CleaningRecipe.self, path: path)
    }

    /// The operators, ready to run; reads files the recipe names (URL blocklists).
    public func makeOperators() throws(DataError) -> [any CleaningOperator] {
        var made = [any CleaningOperator]()
        for spec in operators { made.append(try spec.makeOperator()) }
        return made
    }
}

/// One operator of a recipe with its config.
public enum OperatorSpec: Codable, Sendable, Equatable {
    case unicodeNormalize(UnicodeNormalizer.Config)
    case whitespaceCleanup(WhitespaceCleaner.Config)
    case gopherQuality(GopherQualityFilter.Config)
    case gopherRepetition(GopherRepetitionFilter.Config)
    case c4(C4Filter.Config)
    case scriptLanguage(ScriptFilter.Config)
    case urlBlocklist(URLBlocklistFilter.Config)
    case piiScrub(PIIScrubber.Config)

    public static let names = [UnicodeNormalizer.name, WhitespaceCleaner.name, GopherQualityFilter.name, GopherRepetitionFilter.name,
                               C4Filter.name, ScriptFilter.name, URLBlocklistFilter.name, PIIScrubber.name]

    public var name: String {
        switch self {
        case .unicodeNormalize: UnicodeNormalizer.name
        case .whitespaceCleanup: WhitespaceCleaner.name
        case .gopherQuality: GopherQualityFilter.name
        case .gopherRepetition: GopherRepetitionFilter.name
        case .c4: C4Filter.name
        case .scriptLanguage: ScriptFilter.name
        case .urlBlocklist: URLBlocklistFilter.name
        case .piiScrub: PIIScrubber.name
        }
    }

    private struct NameKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let path = dottedKey(decoder.codingPath)
        guard let container = try? decoder.container(keyedBy: NameKey.self), container.allKeys.count == 1,
              let key = container.allKeys.first else {
            throw ConfigError(key: path, message: "an operator is a mapping with one key, its name (e.g. '- gopher_quality: {min_words: 20}')")
        }
        // `- pii_scrub:` with nothing after it means all defaults.
        func config<Config: OperatorConfig>(_ type: Config.Type) throws -> Config {
            if try container.decodeNil(forKey: key) { return Config() }
            return try container.decode(Config.self, forKey: key)
        }
        switch key.stringValue {
        case UnicodeNormalizer.name: self = .unicodeNormalize(try config(UnicodeNormalizer.Config.self))
        case WhitespaceCleaner.name: self = .whitespaceCleanup(try config(WhitespaceCleaner.Config.self))
        case GopherQualityFilter.name: self = .gopherQuality(try config(GopherQualityFilter.Config.self))
        case GopherRepetitionFilter.name: self = .gopherRepetition(try config(GopherRepetitionFilter.Config.self))
        case C4Filter.name: self = .c4(try config(C4Filter.Config.self))
        case ScriptFilter.name: self = .scriptLanguage(try config(ScriptFilter.Config.self))
        case URLBlocklistFilter.name: self = .urlBlocklist(try config(URLBlocklistFilter.Config.self))
        case PIIScrubber.name: self = .piiScrub(try config(PIIScrubber.Config.self))
        default:
            let name = key.stringValue
            var message = "unknown operator '\(name)'"
            if let suggestion = ConfigLoader.suggestion(for: name, among: Self.names) { message += "; did you mean '\(suggestion)'?" }
            else { message += "; known operators: \(Self.names.joined(separator: ", "))" }
            throw ConfigError(key: path, message: message)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: NameKey.self)
        let key = NameKey(stringValue: name)
        switch self {
        case .unicodeNormalize(let config): try container.encode(config, forKey: key)
        case .whitespaceCleanup(let config): try container.encode(config, forKey: key)
        case .gopherQuality(let config): try container.encode(config, forKey: key)
        case .gopherRepetition(let config): try container.encode(config, forKey: key)
        case .c4(let config): try container.encode(config, forKey: key)
        case .scriptLanguage(let config): try container.encode(config, forKey: key)
        case .urlBlocklist(let config): try container.encode(config, forKey: key)
        case .piiScrub(let config): try container.encode(config, forKey: key)
        }
    }

    func validate() throws(ConfigError) {
        switch self {
        case .unicodeNormalize: return
        case .whitespaceCleanup(let config): try config.validate()
        case .gopherQuality(let config): try config.validate()
        case .gopherRepetition(let config): try config.validate()
        case .c4(let config): try config.validate()
        case .scriptLanguage(let config): try config.validate()
        case .urlBlocklist(let config): try config.validate()
        case .piiScrub(let config): try config.validate()
        }
    }

    public func makeOperator() throws(DataError) -> any CleaningOperator {
        switch self {
        case .unicodeNormalize(let config): UnicodeNormalizer(config)
        case .whitespaceCleanup(let config): WhitespaceCleaner(config)
        case .gopherQuality(let config): GopherQualityFilter(config)
        case .gopherRepetition(let config): GopherRepetitionFilter(config)
        case .c4(let config): C4Filter(config)
        case .scriptLanguage(let config): ScriptFilter(config)
        case .urlBlocklist(let config): try URLBlocklistFilter(config)
        case .piiScrub(let config): PIIScrubber(config)
        }
    }
}

/// An operator's options: every key has a default, so `init()` is the operator with defaults.
public protocol OperatorConfig: Codable, Sendable, Equatable {
    init()
}

extension UnicodeNormalizer.Config: OperatorConfig {}
extension WhitespaceCleaner.Config: OperatorConfig {}
extension GopherQualityFilter.Config: OperatorConfig {}
extension GopherRepetitionFilter.Config: OperatorConfig {}
extension C4Filter.Config: OperatorConfig {}
extension ScriptFilter.Config: OperatorConfig {}
extension URLBlocklistFilter.Config: OperatorConfig {}
extension PIIScrubber.Config: OperatorConfig {}
