import Foundation

/// One document read from an input file.
public struct InputDocument: Sendable {
    public var text: String
    /// `FILE:LINE` for JSONL, `FILE` for a text file: where errors and dedup reports point.
    public var location: String
}

/// Reads documents (DESIGN §4): JSONL (`.jsonl`, or `.jsonl.zst` decoded as a stream) with the
/// text in `textField`, or a plain `.txt` file as one document. Blank JSONL lines are skipped;
/// anything else that is not an object with a string `textField` is an error naming file:line.
public final class DocumentReader {
    public typealias Format = InputFormat

    public let path: String
    public let format: Format
    public let textField: String
    private var lines: LineReader?
    private var textConsumed = false
    private var textBytes = 0

    /// The format an input file name implies, or nil.
    public static func format(of path: String) -> Format? { InputFormat(path: path).flatMap { $0 == .html ? nil : $0 } }

    /// Expands inputs into files: a file as given, a directory into its `.jsonl`, `.jsonl.zst` and
    /// `.txt` files (recursively, sorted by path so the order is the same everywhere). Returns the
    /// files and how many other files the directories held (not read).
    public static func expand(_ inputs: [String]) throws(DataError) -> (files: [String], ignored: Int) {
        let (units, ignored) = try WorkPlan.units(inputs: inputs)
        return (units.map(\.path), ignored)
    }

    public init(path: String, textField: String = "text") throws(DataError) {
        guard let format = Self.format(of: path) else {
            throw DataError("\(path): unknown input format (expected .jsonl, .jsonl.zst or .txt)")
        }
        self.path = path
        self.format = format
        self.textField = textField
        switch format {
        case .jsonl: lines = LineReader(try FileByteReader(path: path))
        case .jsonlZstd: lines = LineReader(try ZstdByteReader(path: path))
        case .text, .html: lines = nil
        }
    }

    /// Bytes of the file consumed so far (compressed bytes for `.zst`), for progress lines.
    public var fileBytesRead: Int { lines?.fileBytesRead ?? textBytes }

    /// The next document, or nil at the end of the file.
    public func next() throws(DataError) -> InputDocument? {
        guard let lines else { return try nextTextFile() }
        while let line = try lines.next() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let location = "\(path):\(lines.lineNumber)"
            let object: Any
            do {
                object = try JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])
            } catch {
                throw DataError("\(location): malformed JSON (expected one JSON object per line)")
            }
            guard let fields = object as? [String: Any] else {
                throw DataError("\(location): expected a JSON object, found \(Self.kind(of: object))")
            }
            guard let value = fields[textField] else {
                throw DataError("\(location): no '\(textField)' field (--text-field names the field that holds the text)")
            }
            guard let text = value as? String else {
                throw DataError("\(location): field '\(textField)' is \(Self.kind(of: value)), not a string")
            }
            return InputDocument(text: text, location: location)
        }
        return nil
    }

    private func nextTextFile() throws(DataError) -> InputDocument? {
        guard !textConsumed else { return nil }
        textConsumed = true
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot be read") }
        textBytes = data.count
        guard let text = String(data: data, encoding: .utf8) else { throw DataError("\(path): not valid UTF-8 text") }
        return InputDocument(text: text, location: path)
    }

    private static func kind(of value: Any) -> String {
        switch value {
        case is String: return "a string"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        // JSON booleans arrive as NSNumber too, of the (private) class __NSCFBoolean.
        case is NSNumber: return String(describing: type(of: value)).contains("Boolean") ? "a boolean" : "a number"
        default: return "\(type(of: value))"
        }
    }
}
