import Runtime

/// Tidies whitespace and removes invisible characters: `\r\n` → `\n`, trailing spaces and tabs
/// of each line, runs of blank lines, control characters (C0 except tab and newline, DEL, C1),
/// zero-width characters and byte-order marks; Unicode spaces (no-break, em, ideographic…)
/// become a plain space.
public struct WhitespaceCleaner: CleaningOperator {
    public struct Config: Codable, Sendable, Equatable, ValidatedConfig {
        /// Remove spaces and tabs at the end of every line.
        public var stripTrailingSpaces = true
        /// The longest run of blank lines kept (longer runs shrink to this many).
        public var maxBlankLines = 1
        /// Remove control characters, zero-width characters and byte-order marks.
        public var removeControlCharacters = true
        /// Replace Unicode space characters by U+0020.
        public var normalizeSpaces = true
        /// Remove blank lines at the start and end of the document.
        public var stripDocument = true

        public init() {}

        enum CodingKeys: String, CodingKey {
            case stripTrailingSpaces = "strip_trailing_spaces", maxBlankLines = "max_blank_lines"
            case removeControlCharacters = "remove_control_characters", normalizeSpaces = "normalize_spaces"
            case stripDocument = "strip_document"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Config()
            stripTrailingSpaces = try container.decode(.stripTrailingSpaces, default: defaults.stripTrailingSpaces)
            maxBlankLines = try container.decode(.maxBlankLines, default: defaults.maxBlankLines)
            removeControlCharacters = try container.decode(.removeControlCharacters, default: defaults.removeControlCharacters)
            normalizeSpaces = try container.decode(.normalizeSpaces, default: defaults.normalizeSpaces)
            stripDocument = try container.decode(.stripDocument, default: defaults.stripDocument)
        }

        public func validate() throws(ConfigError) {
            guard maxBlankLines >= 0 else { throw .invalid("max_blank_lines", maxBlankLines, "must be at least 0") }
        }
    }

    public static let name = "whitespace_cleanup"
    public var name: String { Self.name }
    public let config: Config

    public init(_ config: Config = Config()) { self.config = config }

    public func apply(to document: inout CleaningDocument, effect: inout OperatorEffect) -> OperatorOutcome {
        let (output, removed, changed) = TextScanning.withBytes(document.text) { bytes in clean(bytes) }
        guard changed else { return .keep }
        effect.charactersChanged += removed
        document.text = String(decoding: output, as: UTF8.self)
        return .keep
    }

    /// The cleaned bytes, the number of scalars removed or replaced, and whether anything changed.
    private func clean(_ bytes: UnsafeBufferPointer<UInt8>) -> ([UInt8], Int, Bool) {
        var output = [UInt8]()
        output.reserveCapacity(bytes.count)
        var touched = 0
        var pendingBlankLines = 0
        var wroteLine = false
        var line = [UInt8]()
        for range in TextScanning.lines(in: bytes) {
            line.removeAll(keepingCapacity: true)
            touched += filterCharacters(bytes, range, into: &line)
            if config.stripTrailingSpaces {
                while let last = line.last, last == 0x20 || last == 0x09 { line.removeLast(); touched += 1 }
            }
            let isBlank = !line.contains { !TextScanning.isWhitespace($0) }
            if isBlank {
                pendingBlankLines += 1
                touched += line.count
                continue
            }
            var blankLines = pendingBlankLines
            if config.stripDocument && !wroteLine { blankLines = 0 }
            blankLines = min(blankLines, config.maxBlankLines)
            touched += pendingBlankLines - blankLines
            if wroteLine { output.append(0x0A) }
            for _ in 0..<blankLines { output.append(0x0A) }
            output += line
            wroteLine = true
            pendingBlankLines = 0
        }
        // What follows the last line: its newline, and trailing blank lines unless stripped.
        let trailing = config.stripDocument ? 0 : min(pendingBlankLines, config.maxBlankLines)
        touched += pendingBlankLines - trailing
        if wroteLine && (bytes.last == 0x0A || pendingBlankLines > 0) { output.append(0x0A) }
        for _ in 0..<trailing { output.append(0x0A) }
        let changed = !output.elementsEqual(bytes)
        return (output, changed ? max(touched, 1) : 0, changed)
    }

    /// Copies one line, dropping or replacing characters; returns how many it touched.
    private func filterCharacters(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into line: inout [UInt8]) -> Int {
        var touched = 0
        var index = range.lowerBound
        while index < range.upperBound {
            let byte = bytes[index]
            if byte < 0x80 {
                if config.removeControlCharacters && ((byte < 0x20 && byte != 0x09) || byte == 0x7F) { touched += 1 }
                else { line.append(byte) }
                index += 1
                continue
            }
            let (scalar, length) = TextScanning.scalar(in: bytes, at: index)
            let value = scalar.value
            if config.removeControlCharacters && ((value >= 0x80 && value <= 0x9F) || value == 0x200B || value == 0x200C
                                                  || value == 0x200D || value == 0x2060 || value == 0xFEFF || value == 0xAD) {
                touched += 1
            } else if config.normalizeSpaces && (value == 0xA0 || (value >= 0x2000 && value <= 0x200A) || value == 0x202F
                                                 || value == 0x205F || value == 0x3000) {
                line.append(0x20)
                touched += 1
            } else {
                line.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<index + length]))
            }
            index += length
        }
        return touched
    }
}
