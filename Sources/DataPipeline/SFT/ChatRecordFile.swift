import Foundation

/// The lines of a JSONL chat data file (plain or `.zst`) as `ChatRecord`s with their
/// `file:line`, for the SFT and preference readers. Blank lines are skipped; a line that is not
/// a JSON object stops the read.
final class ChatRecordFile {
    let path: String
    private let lines: LineReader

    /// - Parameter kind: what the file holds ("SFT data"), for the message about a wrong suffix.
    init(path: String, kind: String) throws(DataError) {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw DataError("\(path): no such file") }
        if path.hasSuffix(".zst") {
            lines = LineReader(try ZstdByteReader(path: path))
        } else if path.hasSuffix(".jsonl") || path.hasSuffix(".json") {
            lines = LineReader(try FileByteReader(path: path))
        } else {
            throw DataError("\(path): \(kind) is JSONL, one sample per line (.jsonl, or .jsonl.zst compressed)")
        }
    }

    /// The next record read by `parse`, with its `file:line`, or nil at the end of the file. What
    /// `parse` throws stops the read as `file:line: message` (DESIGN §6).
    func next<Value>(_ parse: (ChatRecord) throws(RecordError) -> Value) throws(DataError) -> (source: String, value: Value)? {
        while let line = try lines.next() {
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
            let source = "\(path):\(lines.lineNumber)"
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw DataError("\(source): not a JSON object")
            }
            do {
                return (source, try parse(ChatRecord(object: object)))
            } catch {
                throw DataError("\(source): \(error.message)")
            }
        }
        return nil
    }
}
