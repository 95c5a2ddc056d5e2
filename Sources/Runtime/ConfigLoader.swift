import Foundation
import Yams

/// A config that cannot be used: names the file (or `--set`), the key, the value and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file the value came from, or `--set` for a command-line override.
    public var source: String?
    /// The dotted key, e.g. `train.steps`; empty for the whole document.
    public var key: String
    public var message: String

    public init(source: String? = nil, key: String, message: String) {
        self.source = source
        self.key = key
        self.message = message
    }

    /// A value outside its allowed range: "key 'x': value 0 ... must be at least 1".
    public static func invalid(_ key: String, _ value: CustomStringConvertible, _ constraint: String) -> ConfigError {
        ConfigError(key: key, message: "value \(value) is invalid: \(constraint)")
    }

    public var description: String {
        let place = source.map { "\($0): " } ?? ""
        return key.isEmpty ? "\(place)\(message)" : "\(place)key '\(key)': \(message)"
    }
}

/// A config section that checks its values once, after decoding.
public protocol ValidatedConfig {
    /// Throws a `ConfigError` naming the key, the value and the constraint it breaks.
    func validate() throws(ConfigError)
}

/// A closed choice in a config (an enum with string values): a bad value lists the choices.
public protocol ConfigChoice: RawRepresentable<String>, CaseIterable, Codable, Sendable {}

extension ConfigChoice {
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: raw) else {
            let choices = Self.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw ConfigError(key: dottedKey(decoder.codingPath), message: "value '\(raw)' is not one of \(choices)")
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension KeyedDecodingContainer {
    /// The value at `key`, or `fallback` when the key is absent (configs list only what differs).
    public func decode<T: Decodable>(_ key: Key, default fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}

/// Reads YAML configs into `Codable` structs, strictly: unknown keys, wrong types and bad values
/// are `ConfigError`s, and `--set section.key=value` overrides any field.
public enum ConfigLoader {
    /// Loads `path`, applies `overrides` (each `dotted.key=value`, the value parsed as YAML),
    /// decodes and validates. A top-level key named in `includes` may hold a file name instead
    /// of a mapping (`model: configs/model/tiny.yaml`): that file's mapping is read in its place
    /// (relative to the working directory, else to the config file's directory) before the
    /// overrides apply.
    public static func load<Config: Codable>(_ type: Config.Type, path: String, overrides: [String] = [],
                                             includes: [String] = []) throws(ConfigError) -> Config {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigError(source: path, key: "", message: "config file not found")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(source: path, key: "", message: "config file cannot be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(source: path, key: "", message: "config file is not UTF-8 text")
        }
        return try decode(type, yaml: text, source: path, overrides: overrides, includes: includes)
    }

    /// Decodes YAML text; `source` names it in errors.
    public static func decode<Config: Codable>(_ type: Config.Type, yaml: String, source: String,
                                               overrides: [String] = [], includes: [String] = []) throws(ConfigError) -> Config {
        var root = try parse(yaml, source: source)
        if isNull(root) { root = Node.mapping(Node.Mapping([])) }
        guard case .mapping = root else {
            throw ConfigError(source: source, key: "", message: "the document must be a mapping of keys to values")
        }
        for key in includes { try include(key, in: &root, source: source) }
        for override in overrides { try apply(override, to: &root) }
        let config: Config
        do {
            config = try YAMLDecoder().decode(Config.self, from: root)
        } catch let error as ConfigError {
            var located = error
            located.source = located.source ?? sourceOf(key: error.key, in: root, file: source, overrides: overrides)
            throw located
        } catch let error as DecodingError {
            throw describe(error, root: root, source: source, overrides: overrides)
        } catch {
            throw ConfigError(source: source, key: "", message: "\(error)")
        }
        try rejectUnknownKeys(in: root, decoded: config, source: source, overrides: overrides)
        try rejectNonFiniteNumbers(in: config, source: source, root: root, overrides: overrides)
        if let validated = config as? ValidatedConfig {
            do {
                try validated.validate()
            } catch {
                var located = error
                located.source = sourceOf(key: error.key, in: root, file: source, overrides: overrides)
                throw located
            }
        }
        return config
    }

    /// Replaces `key: FILE` by the mapping in FILE.
    private static func include(_ key: String, in root: inout Node, source: String) throws(ConfigError) {
        guard var mapping = root.mapping, let value = mapping[key], case .scalar(let scalar) = value,
              NSNull.construct(from: scalar) == nil else { return }
        let name = scalar.string
        let besideConfig = URL(fileURLWithPath: source).deletingLastPathComponent().appendingPathComponent(name).path
        let path = FileManager.default.fileExists(atPath: name) ? name : besideConfig
        guard FileManager.default.fileExists(atPath: path), let data = FileManager.default.contents(atPath: path),
              let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(source: source, key: key, message: "included file '\(name)' not found")
        }
        let included = try parse(text, source: path)
        guard case .mapping = included else {
            throw ConfigError(source: path, key: "", message: "the document must be a mapping of keys to values")
        }
        mapping[key] = included
        root = .mapping(mapping)
    }

    private static func parse(_ yaml: String, source: String) throws(ConfigError) -> Node {
        do {
            return try Yams.compose(yaml: yaml) ?? Node.mapping(Node.Mapping([]))
        } catch let error as YamlError {
            throw ConfigError(source: source, key: "", message: "malformed YAML: \(yamlProblem(error))")
        } catch {
            throw ConfigError(source: source, key: "", message: "malformed YAML: \(error)")
        }
    }

    private static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let prefix = context.map { "\($0.text) " } ?? ""
            return "\(prefix)\(problem) at line \(mark.line), column \(mark.column)"
        default:
            return "\(error)"
        }
    }

    /// Sets `a.b.c=value` in the document, creating missing mappings on the way.
    private static func apply(_ override: String, to root: inout Node) throws(ConfigError) {
        guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
            throw ConfigError(source: "--set", key: "", message: "'\(override)' is not of the form section.key=value")
        }
        let key = String(override[..<equals])
        let valueText = String(override[override.index(after: equals)...])
        let value: Node
        do {
            value = try Yams.compose(yaml: valueText) ?? Node("", Tag(.null))
        } catch {
            throw ConfigError(source: "--set", key: key, message: "value '\(valueText)' is not valid YAML")
        }
        let path = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !path.contains(where: \.isEmpty) else {
            throw ConfigError(source: "--set", key: key, message: "the key has an empty part")
        }
        try set(value, at: path[...], in: &root, fullKey: key)
    }

    private static func set(_ value: Node, at path: ArraySlice<String>, in node: inout Node, fullKey: String) throws(ConfigError) {
        guard var mapping = node.mapping else {
            throw ConfigError(source: "--set", key: fullKey, message: "cannot set a key inside a value that is not a mapping")
        }
        guard let first = path.first else { return }
        if path.count == 1 {
            mapping[first] = value
        } else {
            var child = mapping[first] ?? Node.mapping(Node.Mapping([]))
            try set(value, at: path.dropFirst(), in: &child, fullKey: fullKey)
            mapping[first] = child
        }
        node = .mapping(mapping)
    }

    /// Every key present in the input but absent from the decoded value re-encoded is unknown:
    /// decoding ignores such keys, so without this check a typo would silently use a default.
    private static func rejectUnknownKeys<Config: Codable>(in root: Node, decoded: Config, source: String,
                                                           overrides: [String]) throws(ConfigError) {
        let known: Node
        do {
            known = try Yams.compose(yaml: try YAMLEncoder().encode(decoded)) ?? Node.mapping(Node.Mapping([]))
        } catch {
            throw ConfigError(source: source, key: "", message: "internal error re-encoding the config: \(error)")
        }
        try compareKeys(root, known, path: [], source: source, root: root, overrides: overrides)
    }

    /// A number must be finite: YAML's `.inf` and `.nan` decode as Doubles and pass most range
    /// checks (`.inf > 0`), but a run saves its config as JSON (`run_config.json`), which has
    /// neither; encoding it here finds such a value by its key before any work starts.
    private static func rejectNonFiniteNumbers<Config: Encodable>(in config: Config, source: String, root: Node,
                                                                  overrides: [String]) throws(ConfigError) {
        do {
            _ = try JSONEncoder().encode(config)
        } catch EncodingError.invalidValue(let value, let context) {
            let key = dottedKey(context.codingPath)
            throw ConfigError(source: sourceOf(key: key, in: root, file: source, overrides: overrides), key: key,
                              message: "value \(value) is invalid: must be a finite number")
        } catch {
            throw ConfigError(source: source, key: "", message: "cannot be saved as JSON: \(Runtime.describe(error))")
        }
    }

    private static func compareKeys(_ input: Node, _ known: Node, path: [String], source: String, root: Node,
                                    overrides: [String]) throws(ConfigError) {
        switch (input, known) {
        case (.mapping(let inputMapping), .mapping(let knownMapping)):
            let knownKeys: [String] = knownMapping.keys.compactMap(\.string)
            for (keyNode, value) in inputMapping {
                guard let key = keyNode.string else { continue }
                let childPath = path + [key]
                if let knownValue = knownMapping[key] {
                    try compareKeys(value, knownValue, path: childPath, source: source, root: root, overrides: overrides)
                } else if !isNull(value) {
                    let dotted = childPath.joined(separator: ".")
                    var message = "unknown key"
                    // `--set a.b=1` with `a` unknown: say which override made it.
                    if let override = overrides.first(where: { $0.hasPrefix(dotted + ".") }) { message += " (in --set \(override))" }
                    if let suggestion = closest(key, among: knownKeys) { message += "; did you mean '\(suggestion)'?" }
                    else if !knownKeys.isEmpty { message += "; known keys here: \(knownKeys.sorted().joined(separator: ", "))" }
                    throw ConfigError(source: sourceOf(key: dotted, in: root, file: source, overrides: overrides),
                                      key: dotted, message: message)
                }
            }
        case (.sequence(let inputItems), .sequence(let knownItems)):
            for (index, pair) in zip(inputItems, knownItems).enumerated() {
                try compareKeys(pair.0, pair.1, path: path + ["\(index)"], source: source, root: root, overrides: overrides)
            }
        default:
            return
        }
    }

    private static func isNull(_ node: Node) -> Bool {
        if case .scalar(let scalar) = node { return NSNull.construct(from: scalar) != nil }
        return false
    }

    private static func describe(_ error: DecodingError, root: Node, source: String, overrides: [String]) -> ConfigError {
        func located(_ path: [any CodingKey], _ message: String) -> ConfigError {
            let key = dottedKey(path)
            return ConfigError(source: sourceOf(key: key, in: root, file: source, overrides: overrides), key: key, message: message)
        }
        switch error {
        case .typeMismatch(let type, let context):
            let found = value(at: context.codingPath, in: root).map { "found '\($0)'" } ?? "found another kind of value"
            return located(context.codingPath, "expected \(typeDescription(type)), \(found)")
        case .valueNotFound(let type, let context):
            return located(context.codingPath, "expected \(typeDescription(type)), found no value")
        case .keyNotFound(let key, let context):
            return located(context.codingPath + [key], "required key is missing")
        case .dataCorrupted(let context):
            let found = value(at: context.codingPath, in: root).map { "value '\($0)' is invalid" } ?? "invalid value"
            return located(context.codingPath, "\(found): \(context.debugDescription)")
        @unknown default:
            return ConfigError(source: source, key: "", message: "\(error)")
        }
    }

    /// The override that set `key`, or the file.
    private static func sourceOf(key: String, in root: Node, file: String, overrides: [String]) -> String {
        overrides.contains { $0.hasPrefix(key + "=") || $0.hasPrefix(key + ".") || key.hasPrefix(($0.split(separator: "=").first.map(String.init) ?? "") + ".") } ? "--set" : file
    }

    private static func value(at path: [any CodingKey], in root: Node) -> String? {
        var node = root
        for key in path {
            if let index = key.intValue, let items = node.sequence, index < items.count { node = items[index] }
            else if let child = node.mapping?[key.stringValue] { node = child }
            else { return nil }
        }
        if case .scalar(let scalar) = node { return scalar.string }
        return node.sequence != nil ? "a list" : "a mapping"
    }

    private static func typeDescription(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int32.Type, is Int64.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default: return "\(type)"
        }
    }

    /// The candidate closest to a misspelt `key`, for "did you mean" messages in decoders that
    /// check names themselves (recipe operator names).
    public static func suggestion(for key: String, among candidates: [String]) -> String? {
        closest(key, among: candidates)
    }

    private static func closest(_ key: String, among candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance($0, key)) }.filter { $0.1 <= max(2, key.count / 3) }
        return scored.min { $0.1 < $1.1 }?.0
    }
}

/// `[train, steps]` → `train.steps`.
public func dottedKey(_ path: [any CodingKey]) -> String {
    path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
}

/// Levenshtein distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + [Int](repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
