import Foundation

/// Reads SFT samples from a JSONL file (plain or `.zst`) in one of the `SFTFormat` layouts,
/// streaming one line at a time, and validates each as it goes: a line that is not a sample
/// MeshLM can train on stops the read with `file:line: what is wrong` (DESIGN §6) — never a
/// silent skip. Blank lines are skipped.
///
/// Every format becomes a conversation (or, for plain-text prompt/completion, a text pair)
/// with these rules: at most one system turn, first; then user and assistant turns alternating,
/// starting with a user turn and ending with an assistant turn; no assistant turn empty.
/// Alpaca's `instruction` and `input` are joined with a newline (as LlamaFactory does), and its
/// `history` pairs come before them.
public final class SFTRecordReader {
    public let path: String
    public let format: SFTFormat
    public let tags: ShareGPTTags
    private let records: ChatRecordFile

    public init(path: String, format: SFTFormat = .auto, tags: ShareGPTTags = ShareGPTTags()) throws(DataError) {
        self.path = path
        self.format = format
        self.tags = tags
        records = try ChatRecordFile(path: path, kind: "SFT data")
    }

    /// The next sample, or nil at the end of the file.
    public func next() throws(DataError) -> SFTSample? {
        try records.next(parse).map { SFTSample(source: $0.source, content: $0.value) }
    }

    /// Every sample of the file (small sets; large ones go through `next()`).
    public func readAll() throws(DataError) -> [SFTSample] {
        var samples: [SFTSample] = []
        while let sample = try next() { samples.append(sample) }
        return samples
    }

    // MARK: Formats

    private func parse(_ record: ChatRecord) throws(RecordError) -> SFTSample.Content {
        switch format == .auto ? try detect(record) : format {
        case .alpaca:
            let prompt = try record.alpacaPrompt()
            return .conversation(try ChatRecord.validated(prompt + [ChatTurn(.assistant, try record.string("output"))]))
        case .sharegpt: return .conversation(try ChatRecord.validated(try record.shareGPTConversation(tags: tags)))
        case .openai: return .conversation(try ChatRecord.validated(try record.messages("messages")))
        case .promptCompletion: return try promptCompletion(record)
        case .auto: preconditionFailure("detect returns a concrete format")
        }
    }

    private func detect(_ record: ChatRecord) throws(RecordError) -> SFTFormat {
        if record.has("messages") { return .openai }
        if record.has("conversations") { return .sharegpt }
        if record.has("instruction") { return .alpaca }
        if record.has("prompt") && record.has("completion") { return .promptCompletion }
        throw RecordError("cannot tell the format from the keys \(record.keys): expected messages (openai), conversations (sharegpt), instruction (alpaca) or prompt + completion (set the format to say which)")
    }

    private func promptCompletion(_ record: ChatRecord) throws(RecordError) -> SFTSample.Content {
        switch (try record.value("prompt"), try record.value("completion")) {
        case (let prompt as String, let completion as String):
            guard !ChatRecord.isBlank(completion) else { throw RecordError("empty \"completion\": nothing to learn from") }
            return .text(prompt: prompt, completion: completion)
        case (is [Any], is [Any]):
            // Conversational prompt-completion (TRL): the completion's messages follow the prompt's.
            return .conversation(try ChatRecord.validated(try record.messages("prompt") + record.messages("completion")))
        default: throw RecordError("\"prompt\" and \"completion\" must both be strings, or both be lists of messages")
        }
    }
}
