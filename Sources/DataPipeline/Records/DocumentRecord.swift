/// Where a record came from: the input file and the 1-based line (1 for a whole-file document).
public struct RecordSource: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int
    /// Whether the source is a whole file (a `.txt` document), written without a line number.
    public let isWholeFile: Bool

    public var description: String { isWholeFile ? file : "\(file):\(line)" }
}

/// One document flowing through the data stages: its id, its text, where it came from, and its
/// input line kept as bytes so that writing it back preserves every other field byte for byte.
///
/// Stages read and replace `text`; everything else is carried. A record from a `.txt` file has
/// no input line and is written as `{"id": …, "<text field>": …}`.
public struct DocumentRecord: Sendable {
    /// The input's `id` field (a string, or a number's JSON text) when present, else
    /// `NAME:LINE` for a JSONL line or `NAME` for a `.txt` file, where NAME is the work unit's
    /// name (the path below the input directory, without the format extension).
    public let id: String
    public let source: RecordSource
    /// The work unit the record belongs to; with `source.line` it orders records globally in
    /// the same way whatever the rank count (dedup keeps the smallest).
    public let unitIndex: Int
    /// Whether `text` was replaced since reading.
    public private(set) var textChanged = false
    /// The text; assigning marks the record changed so the writer splices the new value in.
    public var text: String {
        didSet { textChanged = true }
    }

    /// The raw input line and the byte span of the text value in it (quotes included).
    private let line: [UInt8]?
    private let textSpan: Range<Int>

    init(id: String, text: String, source: RecordSource, unitIndex: Int, line: [UInt8]?, textSpan: Range<Int>) {
        self.id = id
        self.text = text
        self.source = source
        self.unitIndex = unitIndex
        self.line = line
        self.textSpan = textSpan
    }

    /// A record made in code (tests, generated documents): written as `{"id":…,"text":…}`.
    public init(id: String, text: String, source: RecordSource, unitIndex: Int = 0) {
        self.init(id: id, text: text, source: source, unitIndex: unitIndex, line: nil, textSpan: 0..<0)
    }

    /// The UTF-8 bytes of the input line this record was read from (nil for `.txt` documents).
    public var originalLine: [UInt8]? { line }

    /// The record as one JSONL line (without the newline): the input line unchanged when the
    /// text is, else the input line with only the text value replaced. `textField` names the
    /// field for records without an input line.
    public func jsonLine(textField: String = "text") -> [UInt8] {
        if let line {
            guard textChanged else { return line }
            var output = [UInt8]()
            output.reserveCapacity(line.count + text.utf8.count / 8)
            output += line[..<textSpan.lowerBound]
            JSONString.appendQuoted(text, to: &output)
            output += line[textSpan.upperBound...]
            return output
        }
        var output = [UInt8]()
        output.reserveCapacity(text.utf8.count + id.utf8.count + 24)
        output += Array("{\"id\":".utf8)
        JSONString.appendQuoted(id, to: &output)
        output.append(UInt8(ascii: ","))
        JSONString.appendQuoted(textField, to: &output)
        output.append(UInt8(ascii: ":"))
        JSONString.appendQuoted(text, to: &output)
        output.append(UInt8(ascii: "}"))
        return output
    }
}
