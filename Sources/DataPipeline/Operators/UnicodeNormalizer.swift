import Foundation
import Runtime

/// Rewrites text into one Unicode normalization form, so that equal-looking text compares equal
/// in later filters and in dedup. ASCII-only text is already in every form and is skipped
/// without decoding.
public struct UnicodeNormalizer: CleaningOperator {
    public enum Form: String, ConfigChoice {
        /// Canonical composition: `e` + U+0301 → `é`; never changes what a reader sees.
        case nfc
        /// Compatibility composition as well: `ﬁ` → `fi`, full-width `Ａ` → `A`, `²` → `2`.
        case nfkc
    }

    public struct Config: Codable, Sendable, Equatable {
        public var form: Form = .nfc

        public init() {}
        public init(form: Form) { self.form = form }

        enum CodingKeys: String, CodingKey { case form }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            form = try container.decode(.form, default: .nfc)
        }
    }

    public static let name = "unicode_normalize"
    public var name: String { Self.name }
    public let config: Config

    public init(_ config: Config = Config()) { self.config = config }

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        let isASCII = TextScanning.withBytes(document.text) { bytes in !bytes.contains { $0 >= 0x80 } }
        guard !isASCII else { return .keep }
        let normalized = switch config.form {
        case .nfc: document.text.precomposedStringWithCanonicalMapping
        case .nfkc: document.text.precomposedStringWithCompatibilityMapping
        }
        if normalized.unicodeScalars.elementsEqual(document.text.unicodeScalars) { return .keep }
        effect.charactersChanged += TextDifference.changedScalars(document.text, normalized)
        document.text = normalized
        return .keep
    }
}

/// How much of a text a rewrite touched.
enum TextDifference {
    /// The longer of the two differing middles once the common prefix and suffix (in scalars)
    /// are removed: exact for one edit, an upper bound for several.
    static func changedScalars(_ before: String, _ after: String) -> Int {
        let old = Array(before.unicodeScalars), new = Array(after.unicodeScalars)
        var prefix = 0
        while prefix < old.count && prefix < new.count && old[prefix] == new[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < old.count - prefix && suffix < new.count - prefix
                && old[old.count - 1 - suffix] == new[new.count - 1 - suffix] { suffix += 1 }
        return max(old.count - prefix - suffix, new.count - prefix - suffix)
    }
}
