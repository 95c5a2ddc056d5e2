import Runtime

/// Replaces personal data by typed placeholders: e-mail addresses by `<EMAIL>`, IPv4 and IPv6
/// addresses by `<IP_ADDRESS>`, phone numbers by `<PHONE>`, Luhn-valid payment card numbers by
/// `<CARD>` (PIIPatterns.swift and PhonePattern.swift say exactly what matches). Where two
/// patterns overlap, the earlier kind in that order wins (a card number is never also a phone).
public struct PIIScrubber: CleaningOperator {
    public enum Kind: String, ConfigChoice {
        case email, card
        case ipAddress = "ip_address"
        case phone

        public var placeholder: String {
            switch self {
            case .email: "<EMAIL>"
            case .card: "<CARD>"
            case .ipAddress: "<IP_ADDRESS>"
            case .phone: "<PHONE>"
            }
        }
    }

    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        /// The kinds to replace.
        public var kinds: [Kind] = Kind.allCases

        public init() {}

        enum CodingKeys: String, CodingKey { case kinds }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            kinds = try container.decode(.kinds, default: Kind.allCases)
        }

        public func validate() throws(ConfigError) {
            guard !kinds.isEmpty else { throw .invalid("kinds", "[]", "name at least one of email, card, ip_address, phone") }
        }
    }

    public static let name = "pii_scrub"
    public var name: String { Self.name }
    public let config: Config

    public init(_ config: Config = Config()) { self.config = config }

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        let result: ([UInt8], [Kind: Int], Int)? = TextScanning.withBytes(document.text) { bytes in
            let matches = findMatches(bytes)
            guard !matches.isEmpty else { return nil }
            var output = [UInt8]()
            output.reserveCapacity(bytes.count)
            var counts = [Kind: Int]()
            var replacedCharacters = 0
            var position = 0
            for (range, kind) in matches {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[position..<range.lowerBound]))
                output.append(contentsOf: kind.placeholder.utf8)
                counts[kind, default: 0] += 1
                replacedCharacters += range.count
                position = range.upperBound
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[position...]))
            return (output, counts, replacedCharacters)
        }
        guard let (output, counts, replacedCharacters) = result else { return .keep }
        document.text = String(decoding: output, as: UTF8.self)
        effect.charactersChanged += replacedCharacters
        for (kind, count) in counts { effect.replacements[kind.rawValue, default: 0] += count }
        return .keep
    }

    /// Non-overlapping matches in text order.
    func findMatches(_ bytes: UnsafeBufferPointer<UInt8>) -> [(Range<Int>, Kind)] {
        var matches = [(Range<Int>, Kind)]()
        // Bytes already claimed by a match of an earlier kind (linear, whatever the match count).
        var taken = [Bool]()
        let enabled = Set(config.kinds)
        // Fixed priority, not config order: the result must not depend on how a recipe lists kinds.
        for kind in Kind.allCases where enabled.contains(kind) {
            let ranges: [Range<Int>] = switch kind {
            case .email: bytes.contains(0x40) ? PIIPatterns.emails(bytes) : []
            case .card: PIIPatterns.cards(bytes)
            case .ipAddress: PIIPatterns.ipv4(bytes) + (bytes.contains(0x3A) ? PIIPatterns.ipv6(bytes) : [])
            case .phone: PIIPatterns.phones(bytes)
            }
            for range in ranges {
                if taken.isEmpty { taken = [Bool](repeating: false, count: bytes.count) }
                guard !taken[range].contains(true) else { continue }
                for index in range { taken[index] = true }
                matches.append((range, kind))
            }
        }
        return matches.sorted { $0.0.lowerBound < $1.0.lowerBound }
    }
}
