import Foundation

/// Reads preference pairs (DPO's data) from a JSONL file (plain or `.zst`) in one of the
/// `PreferenceFormat` layouts, streaming one line at a time. A line that is not a pair MeshLM can
/// train on stops the read with `file:line: what is wrong` (DESIGN §6); blank lines are skipped.
///
/// Each side of a pair becomes a whole sample as `SFTRecordReader` makes them (the same
/// conversation rules), its last turn the one completion: chosen and rejected are each one
/// assistant message, or one plain-text completion. A pair whose chosen and rejected are the
/// same once read teaches nothing: it is skipped and counted (`identicalCount`), not an error,
/// since real preference sets hold a few.
public final class PreferenceRecordReader {
    public let path: String
    public let format: PreferenceFormat
    public let tags: ShareGPTTags
    /// Pairs skipped because chosen and rejected are the same.
    public private(set) var identicalCount = 0
    /// The `file:line` of the first few of them (up to `identicalSourcesKept`).
    public private(set) var identicalSources: [String] = []
    public static let identicalSourcesKept = 5
    private let records: ChatRecordFile

    public init(path: String, format: PreferenceFormat = .auto, tags: ShareGPTTags = ShareGPTTags()) throws(DataError) {
        self.path = path
        self.format = format
        self.tags = tags
        records = try ChatRecordFile(path: path, kind: "preference data")
    }

    /// The next pair, or nil at the end of the file.
    public func next() throws(DataError) -> PreferencePair? {
        while let (source, pair) = try records.next(parse) {
            guard pair.chosen == pair.rejected else {
                return PreferencePair(source: source, chosen: pair.chosen, rejected: pair.rejected, margin: pair.margin)
            }
            identicalCount += 1
            if identicalSources.count < Self.identicalSourcesKept { identicalSources.append(source) }
        }
        return nil
    }

    /// Every pair of the file (small sets; large ones go through `next()`).
    public func readAll() throws(DataError) -> [PreferencePair] {
        var pairs: [PreferencePair] = []
        while let pair = try next() { pairs.append(pair) }
        return pairs
    }

    /// What to print about the skipped pairs, or nil when none was: "2 pairs skipped as
    /// identical (chosen = rejected; first: data.jsonl:4, data.jsonl:9)".
    public var identicalSummary: String? { Self.identicalSummary(count: identicalCount, sources: identicalSources) }

    /// The same for `count` pairs skipped, the first at `sources` (a tokenized directory's record).
    public static func identicalSummary(count: Int, sources: [String]) -> String? {
        guard count > 0 else { return nil }
        return "\(count) \(count == 1 ? "pair" : "pairs") skipped as identical (chosen = rejected; first: \(sources.joined(separator: ", ")))"
    }

    // MARK: Formats

    private typealias Sides = (chosen: SFTSample.Content, rejected: SFTSample.Content, margin: Double?)

    private func parse(_ record: ChatRecord) throws(RecordError) -> Sides {
        let sides: [SFTSample.Content]
        switch format == .auto ? try detect(record) : format {
        case .explicitPrompt: sides = try record.completions(of: "prompt", by: ["chosen", "rejected"])
        case .implicitPrompt: sides = try implicitPrompt(record)
        case .alpaca:
            let prompt = try record.alpacaPrompt()
            sides = try ["chosen", "rejected"].map { key throws(RecordError) in
                .conversation(try ChatRecord.validated(prompt + [try ChatRecord.answer([ChatTurn(.assistant, try record.string(key))], of: key)]))
            }
        case .sharegpt:
            let prompt = try ChatRecord.prompt(try record.shareGPTConversation(tags: tags), of: "conversations")
            sides = try ["chosen", "rejected"].map { key throws(RecordError) in
                let answer = try ChatRecord.shareGPTMessage(try record.value(key), at: "\"\(key)\"", tags: tags)
                return .conversation(try ChatRecord.validated(prompt + [try ChatRecord.answer([answer], of: key)]))
            }
        case .auto: preconditionFailure("detect returns a concrete format")
        }
        return (sides[0], sides[1], try record.optionalNumber("margin"))
    }

    private func detect(_ record: ChatRecord) throws(RecordError) -> PreferenceFormat {
        if record.has("conversations") { return .sharegpt }
        if record.has("instruction") { return .alpaca }
        if record.has("prompt") {
            if record.has("completion") && record.has("label") {
                throw RecordError("a KTO sample (prompt, completion, label), not a pair: preference data gives each prompt a chosen and a rejected answer")
            }
            return .explicitPrompt
        }
        if record.has("chosen") || record.has("rejected") { return .implicitPrompt }
        throw RecordError("cannot tell the format from the keys \(record.keys): expected prompt + chosen + rejected (explicit_prompt), chosen + rejected (implicit_prompt), instruction (alpaca) or conversations (sharegpt) (set the format to say which)")
    }

    /// TRL's implicit prompt: chosen and rejected are whole conversations that share their
    /// start up to a user message (the prompt) and each go on with one assistant message.
    private func implicitPrompt(_ record: ChatRecord) throws(RecordError) -> [SFTSample.Content] {
        let values = (try record.value("chosen"), try record.value("rejected"))
        guard values.0 is [Any], values.1 is [Any] else {
            throw RecordError("without \"prompt\", \"chosen\" and \"rejected\" must be whole conversations (lists of messages) sharing their start")
        }
        let chosen = try record.messages("chosen"), rejected = try record.messages("rejected")
        if chosen == rejected { return [.conversation(try ChatRecord.validated(chosen)), .conversation(chosen)] }
        let shared = zip(chosen, rejected).prefix { $0 == $1 }.count
        guard chosen[..<shared].last?.role == .user else {
            let start = shared == 0 ? "is empty" : "ends with the \(chosen[shared - 1].role.rawValue)'s message"
            throw RecordError("\"chosen\" and \"rejected\" first differ at message \(shared); the prompt, their common start, must end with a user message (here it \(start))")
        }
        return try [(chosen, "chosen"), (rejected, "rejected")].map { (turns, key) throws(RecordError) in
            .conversation(try ChatRecord.validated(Array(turns[..<shared]) + [try ChatRecord.answer(Array(turns[shared...]), of: key)]))
        }
    }
}
