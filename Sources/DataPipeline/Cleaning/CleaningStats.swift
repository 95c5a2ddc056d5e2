import Foundation
import Runtime

/// What a clean run did, per operator and in total. The counts are the same on every run over
/// the same inputs (whatever the rank count, and after a resume); `seconds` and `ranks` are not.
public struct CleaningStats: Codable, Sendable, Equatable {
    public struct OperatorCounts: Codable, Sendable, Equatable {
        public var name: String
        /// Documents the operator saw (those no earlier operator dropped).
        public var documentsIn = 0
        public var dropped = 0
        /// Documents whose text it rewrote.
        public var documentsChanged = 0
        public var charactersChanged = 0
        /// Replacements by kind (PII: `email`, `ip_address`, `phone`, `card`; C4: `lines_removed`).
        public var replacements: [String: Int] = [:]

        public var documentsOut: Int { documentsIn - dropped }

        public init(name: String) { self.name = name }

        enum CodingKeys: String, CodingKey {
            case name, documentsIn = "documents_in", dropped, documentsChanged = "documents_changed"
            case charactersChanged = "characters_changed", replacements
        }

        mutating func add(_ other: OperatorCounts) {
            documentsIn += other.documentsIn
            dropped += other.dropped
            documentsChanged += other.documentsChanged
            charactersChanged += other.charactersChanged
            for (kind, count) in other.replacements { replacements[kind, default: 0] += count }
        }
    }

    public var documents = 0
    public var kept = 0
    /// UTF-8 bytes of the input texts, and of the kept texts as written.
    public var textBytesIn = 0
    public var textBytesOut = 0
    /// Input lines or files skipped under `--on-error skip`.
    public var skipped = 0
    public var operators: [OperatorCounts]
    public var seconds = 0.0
    public var ranks = 1

    public var removed: Int { documents - kept }

    public init(operatorNames: [String]) {
        operators = operatorNames.map(OperatorCounts.init)
    }

    enum CodingKeys: String, CodingKey {
        case documents, kept, textBytesIn = "text_bytes_in", textBytesOut = "text_bytes_out", skipped, operators
    }

    mutating func add(_ other: CleaningStats) {
        documents += other.documents
        kept += other.kept
        textBytesIn += other.textBytesIn
        textBytesOut += other.textBytesOut
        skipped += other.skipped
        for index in operators.indices where index < other.operators.count { operators[index].add(other.operators[index]) }
    }

    /// The counts as compact JSON with sorted keys (ledger summaries).
    var countsJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// `stats.json`: the counts, then throughput under "timing" (which differs between runs).
    public var json: String {
        var timing = JSONLine()
        let seconds = max(self.seconds, 1e-9)
        timing.add("seconds", self.seconds)
        timing.add("ranks", ranks)
        timing.add("docs_per_s", Double(documents) / seconds)
        timing.add("mb_per_s", Double(textBytesIn) / 1e6 / seconds)
        timing.add("mb_per_s_per_rank", Double(textBytesIn) / 1e6 / seconds / Double(ranks))
        return "{\"counts\":\(countsJSON),\"timing\":\(timing.text)}\n"
    }

    /// A readable table: one row per operator, then the totals.
    public var table: String {
        var rows = [["operator", "docs in", "docs out", "dropped", "changed", "chars changed", "replacements"]]
        for counts in operators {
            let replacements = counts.replacements.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            rows.append([counts.name, "\(counts.documentsIn)", "\(counts.documentsOut)", "\(counts.dropped)",
                         "\(counts.documentsChanged)", "\(counts.charactersChanged)", replacements])
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var lines = rows.map { row in
            zip(row, widths).enumerated().map { index, cell in
                index == 0 || index == row.count - 1 ? cell.0.padding(toLength: cell.1, withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: cell.1 - cell.0.count) + cell.0
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        let seconds = max(self.seconds, 1e-9)
        lines.append("")
        lines.append("documents \(documents), kept \(kept), removed \(removed), skipped inputs \(skipped)")
        lines.append(String(format: "text %.2f MB in, %.2f MB out; %.2f s on %d rank%@: %.0f docs/s, %.2f MB/s (%.2f MB/s per rank)",
                            Double(textBytesIn) / 1e6, Double(textBytesOut) / 1e6, self.seconds, ranks, ranks == 1 ? "" : "s",
                            Double(documents) / seconds, Double(textBytesIn) / 1e6 / seconds,
                            Double(textBytesIn) / 1e6 / seconds / Double(ranks)))
        return lines.joined(separator: "\n")
    }
}
