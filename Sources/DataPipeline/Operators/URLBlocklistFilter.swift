import Foundation
import Runtime

/// Drops documents whose `url` field, or any URL in whose text, is on a blocked domain or one of
/// its subdomains (`example.com` blocks `example.com` and `ads.example.com`, not `myexample.com`).
/// URLs in text are `scheme://host…` and `www.host…`.
public struct URLBlocklistFilter: CleaningOperator {
    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        /// Blocked domains listed in the recipe.
        public var domains: [String] = []
        /// A file of blocked domains, one per line; `#` starts a comment; empty means none.
        public var domainsFile = ""
        /// Also look for URLs in the text, not only in the `url` field.
        public var scanText = true

        public init() {}

        enum CodingKeys: String, CodingKey { case domains, domainsFile = "domains_file", scanText = "scan_text" }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Config()
            domains = try container.decode(.domains, default: defaults.domains)
            domainsFile = try container.decode(.domainsFile, default: defaults.domainsFile)
            scanText = try container.decode(.scanText, default: defaults.scanText)
        }

        public func validate() throws(ConfigError) {
            guard !domains.isEmpty || !domainsFile.isEmpty else {
                throw ConfigError(key: "domains", message: "the blocklist is empty: list domains, or name a file in domains_file")
            }
            for (index, domain) in domains.enumerated() where URLBlocklistFilter.normalized(domain) == nil {
                throw .invalid("domains.\(index)", "'\(domain)'", "a domain is letters, digits, '-' and '.', like example.com")
            }
        }
    }

    public static let name = "url_blocklist"
    public var name: String { Self.name }
    public let config: Config
    private let blocked: Set<String>

    /// Reads `domains_file` (relative to the working directory) if the config names one.
    public init(_ config: Config) throws(DataError) {
        self.config = config
        var blocked = Set(config.domains.compactMap(Self.normalized))
        if !config.domainsFile.isEmpty {
            guard let data = FileManager.default.contents(atPath: config.domainsFile) else {
                throw DataError("\(config.domainsFile): no such file (url_blocklist.domains_file)")
            }
            let text = String(decoding: data, as: UTF8.self)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let entry = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map {
                    $0.trimmingCharacters(in: .whitespaces)
                } ?? ""
                guard !entry.isEmpty else { continue }
                guard let domain = Self.normalized(entry) else {
                    throw DataError("\(config.domainsFile):\(number + 1): '\(entry)' is not a domain (letters, digits, '-' and '.', like example.com)")
                }
                blocked.insert(domain)
            }
        }
        self.blocked = blocked
    }

    /// Lower case, without a leading `www.` or trailing `.`; nil if not a plausible domain.
    static func normalized(_ domain: String) -> String? {
        var text = domain.lowercased()
        if text.hasPrefix("www.") { text.removeFirst(4) }
        while text.hasSuffix(".") { text.removeLast() }
        guard !text.isEmpty, text.utf8.allSatisfy({ TextScanning.isASCIIAlphanumeric($0) || $0 == 0x2D || $0 == 0x2E }),
              !text.hasPrefix(".") else { return nil }
        return text
    }

    func isBlocked(host: String) -> String? {
        var candidate = Substring(host)
        while true {
            if blocked.contains(String(candidate)) { return String(candidate) }
            guard let dot = candidate.firstIndex(of: ".") else { return nil }
            candidate = candidate[candidate.index(after: dot)...]
        }
    }

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        if let url = document.url, let host = TextScanning.withBytes(url, { Self.host(in: $0, from: 0, schemeRequired: false) }),
           let domain = isBlocked(host: host) {
            return .drop("url field is on blocked domain \(domain)")
        }
        guard config.scanText else { return .keep }
        let found: String? = TextScanning.withBytes(document.text) { bytes in
            for host in Self.hostsInText(bytes) { if let domain = isBlocked(host: host) { return domain } }
            return nil
        }
        if let found { return .drop("text links to blocked domain \(found)") }
        return .keep
    }

    /// Hosts of `scheme://host` and `www.host` URLs in the text.
    static func hostsInText(_ bytes: UnsafeBufferPointer<UInt8>) -> [String] {
        var hosts = [String]()
        var index = 0
        while index + 3 < bytes.count {
            if bytes[index] == 0x3A && bytes[index + 1] == 0x2F && bytes[index + 2] == 0x2F, index > 0,
               TextScanning.isASCIILetter(bytes[index - 1]), let host = host(in: bytes, from: index + 3, schemeRequired: false) {
                hosts.append(host)
            } else if TextScanning.lower(bytes[index]) == 0x77, index + 4 < bytes.count,
                      index == 0 || !(TextScanning.isASCIIAlphanumeric(bytes[index - 1]) || bytes[index - 1] == 0x2E || bytes[index - 1] == 0x2F),
                      TextScanning.lower(bytes[index + 1]) == 0x77, TextScanning.lower(bytes[index + 2]) == 0x77, bytes[index + 3] == 0x2E,
                      let host = host(in: bytes, from: index, schemeRequired: false) {
                hosts.append(host)
            }
            index += 1
        }
        return hosts
    }

    /// The lower-cased host at `start` (skipping `scheme://` when present and user info), or nil.
    static func host(in bytes: UnsafeBufferPointer<UInt8>, from start: Int, schemeRequired: Bool) -> String? {
        var begin = start
        if let schemeEnd = findScheme(bytes, from: start) { begin = schemeEnd }
        var end = begin
        while end < bytes.count, TextScanning.isASCIIAlphanumeric(bytes[end]) || bytes[end] == 0x2D || bytes[end] == 0x2E
                || bytes[end] == 0x40 {
            if bytes[end] == 0x40 { begin = end + 1 }  // user@host
            end += 1
        }
        while end > begin && bytes[end - 1] == 0x2E { end -= 1 }
        guard end > begin else { return nil }
        let host = String(decoding: UnsafeBufferPointer(rebasing: bytes[begin..<end]), as: UTF8.self).lowercased()
        guard host.contains(".") else { return nil }
        return host.hasPrefix("www.") ? String(host.dropFirst(4)) : host
    }

    private static func findScheme(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        var index = start
        while index < bytes.count && index - start < 12 && TextScanning.isASCIILetter(bytes[index]) { index += 1 }
        guard index > start, index + 2 < bytes.count, bytes[index] == 0x3A, bytes[index + 1] == 0x2F, bytes[index + 2] == 0x2F else {
            return nil
        }
        return index + 3
    }
}
