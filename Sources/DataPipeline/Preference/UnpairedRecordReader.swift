import Foundation

/// Reads unpaired samples (KTO's data) from a JSONL file (plain or `.zst`), one
/// `{prompt, completion, label}` per line as TRL writes them: prompt and completion strings
/// (plain text) or message lists (the prompt ending with the user, the completion one assistant
/// message), and `label` a JSON boolean, true for a desirable completion. A line that is not such
/// a sample stops the read with `file:line: what is wrong`; blank lines are skipped.
public final class UnpairedRecordReader {
    public let path: String
    private let records: ChatRecordFile

    public init(path: String) throws(DataError) {
        self.path = path
        records = try ChatRecordFile(path: path, kind: "KTO data")
    }

    /// The next sample, or nil at the end of the file.
    public func next() throws(DataError) -> UnpairedSample? {
        try records.next(parse).map { UnpairedSample(source: $0.source, content: $0.value.content, desirable: $0.value.desirable) }
    }

    /// Every sample of the file (small sets; large ones go through `next()`).
    public func readAll() throws(DataError) -> [UnpairedSample] {
        var samples: [UnpairedSample] = []
        while let sample = try next() { samples.append(sample) }
        return samples
    }

    private func parse(_ record: ChatRecord) throws(RecordError) -> (content: SFTSample.Content, desirable: Bool) {
        if record.has("chosen") || record.has("rejected") {
            throw RecordError("a preference pair (chosen, rejected) in KTO data: KTO reads {prompt, completion, label} samples")
        }
        let content = try record.completions(of: "prompt", by: ["completion"])[0]
        return (content, try record.boolean("label"))
    }
}
