import Foundation

/// What a stage does with an input it cannot read (`--on-error`).
public enum InputErrorPolicy: String, Sendable, CaseIterable {
    /// Stop with the error naming file and line (the default).
    case fail
    /// Skip the line (or the rest of a truncated file, or an empty file), count it, and report
    /// it in the logs and stats.
    case skip
}

/// An input that was skipped under `--on-error skip`, with the error that would have stopped
/// the stage.
public struct SkippedInput: Sendable, Equatable, CustomStringConvertible {
    /// The error text: `FILE:LINE: what is wrong`.
    public let reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { reason }
}

/// How records are read.
public struct RecordReaderOptions: Sendable {
    /// The JSONL field holding the text.
    public var textField: String
    /// The JSONL field holding the document id (a string or a number); generated when absent.
    public var idField: String
    public var onError: InputErrorPolicy
    /// Whether to decode the text. A pass that only copies or drops lines by their place (a
    /// second pass over input already checked) sets this false: records then carry an empty
    /// `text`, and the line is still checked as JSON and UTF-8.
    public var decodeText = true
    /// Whether a file without documents is an error (stages that keep a ledger of inputs) or
    /// simply yields none (`DocumentReader`).
    public var emptyFileIsError = true
    /// Whether the id field is read (and checked); without it every id is generated.
    public var readsIdentifiers = true

    public init(textField: String = "text", idField: String = "id", onError: InputErrorPolicy = .fail) {
        self.textField = textField
        self.idField = idField
        self.onError = onError
    }
}

/// Reads one work unit's documents as `DocumentRecord`s: JSONL lines (plain or a zstd stream)
/// or a whole `.txt` file. Each line is checked as JSON and UTF-8 by a scanner that builds no
/// value; only the text and id fields are decoded. Blank lines are skipped.
public final class RecordReader {
    public let unit: WorkUnit
    public let options: RecordReaderOptions
    private var lines: LineReader?
    private var finished = false
    private var recordCount = 0
    private var wholeFileBytes = 0
    private let textKey: [UInt8]
    private let idKey: [UInt8]
    /// Inputs skipped so far under `.skip`, in order.
    public private(set) var skipped = [SkippedInput]()

    public init(unit: WorkUnit, options: RecordReaderOptions = .init()) throws(DataError) {
        self.unit = unit
        self.options = options
        textKey = Array(options.textField.utf8)
        idKey = Array(options.idField.utf8)
        switch unit.format {
        case .jsonl: lines = LineReader(try FileByteReader(path: unit.path))
        case .jsonlZstd: lines = LineReader(try ZstdByteReader(path: unit.path))
        case .text, .html: lines = nil
        }
    }

    /// Reads JSONL `bytes` held in memory as the lines of `unit` (whose path names them in
    /// errors): the fuzzer's entry (Fuzz/), the same line reader and checks as a file's.
    public init(jsonl bytes: [UInt8], unit: WorkUnit, options: RecordReaderOptions = .init()) {
        self.unit = unit
        self.options = options
        textKey = Array(options.textField.utf8)
        idKey = Array(options.idField.utf8)
        lines = LineReader(MemoryByteReader(bytes), bufferSize: 4096)
    }

    /// Bytes of the file consumed so far (compressed bytes for `.zst`), for progress lines.
    public var fileBytesRead: Int { lines?.fileBytesRead ?? wholeFileBytes }

    /// The next record, or nil at the end of the unit. Under `.fail` a bad line throws; under
    /// `.skip` it is appended to `skipped` and reading goes on.
    public func next() throws(DataError) -> DocumentRecord? {
        guard !finished else { return nil }
        guard let lines else { return try nextTextFile() }
        while true {
            let line: ArraySlice<UInt8>?
            do {
                line = try lines.next()
            } catch {
                // The byte readers name only the file; the line where the stream broke is the
                // one after the last complete line.
                let reason = error.description.hasPrefix(unit.path + ": ")
                    ? "\(unit.path):\(lines.lineNumber + 1): " + error.description.dropFirst(unit.path.count + 2)
                    : error.description
                try handle(DataError(reason))
                finished = true
                return nil
            }
            guard let line else {
                finished = true
                if recordCount == 0 && skipped.isEmpty && options.emptyFileIsError {
                    try handle(DataError("\(unit.path): empty file (no documents)"))
                }
                return nil
            }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            do {
                let record = try parse(Array(line), lineNumber: lines.lineNumber)
                recordCount += 1
                return record
            } catch {
                try handle(error)
            }
        }
    }

    /// Under `.fail` rethrows; under `.skip` records the skip.
    private func handle(_ error: DataError) throws(DataError) {
        guard options.onError == .skip else { throw error }
        skipped.append(SkippedInput(reason: error.description))
    }

    private func parse(_ line: [UInt8], lineNumber: Int) throws(DataError) -> DocumentRecord {
        let location = "\(unit.path):\(lineNumber)"
        return try line.withUnsafeBufferPointer { (bytes) throws(DataError) -> DocumentRecord in
            if let offset = UTF8Check.firstInvalidOffset(bytes) {
                throw DataError("\(location): invalid UTF-8 at byte \(offset + 1)")
            }
            let scanned: (kind: JSONValueKind, fields: [JSONObjectScanner.Field])
            do throws(JSONSyntaxError) {
                scanned = try JSONObjectScanner.scan(bytes)
            } catch {
                throw DataError("\(location): malformed JSON at byte \(error.offset + 1): \(error.reason)")
            }
            guard scanned.kind == .object else {
                throw DataError("\(location): expected a JSON object, found \(scanned.kind.phrase)")
            }
            var textField: JSONObjectScanner.Field?
            var idField: JSONObjectScanner.Field?
            // JSON allows repeated keys; like Python's json, the last one wins.
            for field in scanned.fields {
                if Self.key(field, in: bytes, equals: textKey) { textField = field }
                if options.readsIdentifiers && Self.key(field, in: bytes, equals: idKey) { idField = field }
            }
            guard let textField else {
                throw DataError("\(location): no '\(options.textField)' field (--text-field names the field that holds the text)")
            }
            guard textField.kind == .string else {
                throw DataError("\(location): field '\(options.textField)' is \(textField.kind.phrase), not a string")
            }
            let text = options.decodeText
                ? JSONString.decode(UnsafeBufferPointer(rebasing: bytes[textField.value]), hasEscapes: textField.valueHasEscapes) : ""
            let id: String
            if let idField {
                switch idField.kind {
                case .string:
                    id = JSONString.decode(UnsafeBufferPointer(rebasing: bytes[idField.value]), hasEscapes: idField.valueHasEscapes)
                case .number:
                    id = String(decoding: UnsafeBufferPointer(rebasing: bytes[idField.value]), as: UTF8.self)
                default:
                    throw DataError("\(location): field '\(options.idField)' is \(idField.kind.phrase), not a string or number")
                }
            } else {
                id = "\(unit.name):\(lineNumber)"
            }
            return DocumentRecord(id: id, text: text, source: RecordSource(file: unit.path, line: lineNumber, isWholeFile: false),
                                  unitIndex: unit.index, line: line, textSpan: textField.value)
        }
    }

    private static func key(_ field: JSONObjectScanner.Field, in bytes: UnsafeBufferPointer<UInt8>, equals key: [UInt8]) -> Bool {
        if !field.keyHasEscapes {
            return field.key.count == key.count && bytes[field.key].elementsEqual(key)
        }
        let quoted = UnsafeBufferPointer(rebasing: bytes[(field.key.lowerBound - 1)..<(field.key.upperBound + 1)])
        return JSONString.decode(quoted, hasEscapes: true).utf8.elementsEqual(key)
    }

    private func nextTextFile() throws(DataError) -> DocumentRecord? {
        finished = true
        guard let data = FileManager.default.contents(atPath: unit.path) else {
            try handle(DataError("\(unit.path): cannot be read"))
            return nil
        }
        wholeFileBytes = data.count
        guard !data.isEmpty else {
            try handle(DataError("\(unit.path): empty file (no documents)"))
            return nil
        }
        let invalid = data.withUnsafeBytes { raw in UTF8Check.firstInvalidOffset(raw.bindMemory(to: UInt8.self)) }
        if let invalid {
            try handle(DataError("\(unit.path): invalid UTF-8 at byte \(invalid + 1)"))
            return nil
        }
        recordCount += 1
        let text = unit.format == .html ? HTMLTextExtractor.text(of: [UInt8](data)) : String(decoding: data, as: UTF8.self)
        return DocumentRecord(id: unit.name, text: text,
                              source: RecordSource(file: unit.path, line: 1, isWholeFile: true), unitIndex: unit.index,
                              line: nil, textSpan: 0..<0)
    }
}
