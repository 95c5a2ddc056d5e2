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
    private let lines: LineReader

    public init(path: String, format: SFTFormat = .auto, tags: ShareGPTTags = ShareGPTTags()) throws(DataError) {
        self.path = path
        self.format = format
        self.tags = tags
        guard FileManager.default.fileExists(atPath: path) else { throw DataError("\(path): no such file") }
        if path.hasSuffix(".zst") {
            lines = LineReader(try ZstdByteReader(path: path))
        } else if path.hasSuffix(".jsonl") || path.hasSuffix(".json") {
            lines = LineReader(try FileByteReader(path: path))
        } else {
            throw DataError("\(path): SFT data is JSONL, one sample per line (.jsonl, or .jsonl.zst compressed)")
        }
    }

    /// The next sample, or nil at the end of the file.
    public func next() throws(DataError) -> SFTSample? {
        while let line = try lines.next() {
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
            let source = "\(path):\(lines.lineNumber)"
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw DataError("\(source): not a JSON object")
            }
            do {
                return SFTSample(source: source, content: try parse(object))
            } catch {
                throw DataError("\(source): \(error.message)")
            }
        }
        return nil
    }

    /// Every sample of the file (small sets; large ones go through `next()`).
    public func readAll() throws(DataError) -> [SFTSample] {
        var samples: [SFTSample] = []
        while let sample = try next() { samples.append(sample) }
        return samples
    }

    // MARK: Formats

    /// A problem with one record, before the file and line are put in front of it.
    struct RecordError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private func parse(_ object: [String: Any]) throws(RecordError) -> SFTSample.Content {
        switch format == .auto ? try detect(object) : format {
        case .alpaca: return .conversation(try validated(try alpaca(object)))
        case .sharegpt: return .conversation(try validated(try shareGPT(object)))
        case .openai: return .conversation(try validated(try openAI(object, field: "messages")))
        case .promptCompletion: return try promptCompletion(object)
        case .auto: preconditionFailure("detect returns a concrete format")
        }
    }

    private func detect(_ object: [String: Any]) throws(RecordError) -> SFTFormat {
        if object["messages"] != nil { return .openai }
        if object["conversations"] != nil { return .sharegpt }
        if object["instruction"] != nil { return .alpaca }
        if object["prompt"] != nil && object["completion"] != nil { return .promptCompletion }
        throw RecordError("cannot tell the format from the keys \(object.keys.sorted()): expected messages (openai), conversations (sharegpt), instruction (alpaca) or prompt + completion (set the format to say which)")
    }

    private func alpaca(_ object: [String: Any]) throws(RecordError) -> [ChatTurn] {
        let instruction = try string(object, "instruction")
        let input = try optionalString(object, "input") ?? ""
        let output = try string(object, "output")
        var turns: [ChatTurn] = []
        if let system = try optionalString(object, "system"), !system.isEmpty { turns.append(ChatTurn(.system, system)) }
        if let history = object["history"], !(history is NSNull) {
            guard let pairs = history as? [Any] else { throw RecordError("\"history\" must be a list of [user, assistant] pairs") }
            for (index, pair) in pairs.enumerated() {
                guard let pair = pair as? [Any], pair.count == 2, let user = pair[0] as? String, let assistant = pair[1] as? String else {
                    throw RecordError("\"history\"[\(index)] must be a [user, assistant] pair of strings")
                }
                turns += [ChatTurn(.user, user), ChatTurn(.assistant, assistant)]
            }
        }
        turns.append(ChatTurn(.user, input.isEmpty ? instruction : instruction + "\n" + input))
        turns.append(ChatTurn(.assistant, output))
        return turns
    }

    private func shareGPT(_ object: [String: Any]) throws(RecordError) -> [ChatTurn] {
        guard let messages = object["conversations"] as? [Any] else {
            throw RecordError(object["conversations"] == nil ? "missing field \"conversations\"" : "\"conversations\" must be a list of messages")
        }
        var turns: [ChatTurn] = []
        if let system = try optionalString(object, "system"), !system.isEmpty { turns.append(ChatTurn(.system, system)) }
        let roles = [tags.systemTag: ChatTurn.Role.system, tags.userTag: .user, tags.assistantTag: .assistant]
        for (index, message) in messages.enumerated() {
            guard let message = message as? [String: Any] else { throw RecordError("\"conversations\"[\(index)] is not an object") }
            guard let tag = message[tags.roleTag] as? String else {
                throw RecordError("\"conversations\"[\(index)] has no string \"\(tags.roleTag)\" (the role tag; set it if this file names it otherwise)")
            }
            guard let role = roles[tag] else {
                throw RecordError("\"conversations\"[\(index)]: unknown role \"\(tag)\" (expected \"\(tags.systemTag)\", \"\(tags.userTag)\" or \"\(tags.assistantTag)\"; the tags can be remapped)")
            }
            guard let content = message[tags.contentTag] as? String else {
                throw RecordError("\"conversations\"[\(index)] has no string \"\(tags.contentTag)\" (the content tag)")
            }
            turns.append(ChatTurn(role, content))
        }
        return turns
    }

    private func openAI(_ object: [String: Any], field: String) throws(RecordError) -> [ChatTurn] {
        guard let messages = object[field] as? [Any] else {
            throw RecordError(object[field] == nil ? "missing field \"\(field)\"" : "\"\(field)\" must be a list of messages")
        }
        return try messages.enumerated().map { (index, message) throws(RecordError) in
            guard let message = message as? [String: Any] else { throw RecordError("\"\(field)\"[\(index)] is not an object") }
            guard let name = message["role"] as? String else { throw RecordError("\"\(field)\"[\(index)] has no string \"role\"") }
            guard let role = ChatTurn.Role(rawValue: name) else {
                throw RecordError("\"\(field)\"[\(index)]: unknown role \"\(name)\" (expected system, user or assistant)")
            }
            return ChatTurn(role, try content(of: message["content"], at: "\"\(field)\"[\(index)]"))
        }
    }

    /// A message's content: a string, or a list of parts whose text parts are joined.
    private func content(of value: Any?, at location: String) throws(RecordError) -> String {
        if let text = value as? String { return text }
        guard let parts = value as? [Any] else { throw RecordError("\(location) has no \"content\" string or list of parts") }
        var text = ""
        for (index, part) in parts.enumerated() {
            guard let part = part as? [String: Any], let type = part["type"] as? String else {
                throw RecordError("\(location).content[\(index)] is not a {type, …} part")
            }
            guard type == "text", let partText = part["text"] as? String else {
                throw RecordError("\(location).content[\(index)]: a \"\(type)\" part; MeshLM trains on text parts only")
            }
            text += partText
        }
        return text
    }

    private func promptCompletion(_ object: [String: Any]) throws(RecordError) -> SFTSample.Content {
        switch (object["prompt"], object["completion"]) {
        case (let prompt as String, let completion as String):
            guard !completion.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw RecordError("empty \"completion\": nothing to learn from")
            }
            return .text(prompt: prompt, completion: completion)
        case (is [Any], is [Any]):
            // Conversational prompt-completion (TRL): the completion's messages follow the prompt's.
            return .conversation(try validated(try openAI(object, field: "prompt") + openAI(object, field: "completion")))
        case (nil, _): throw RecordError("missing field \"prompt\"")
        case (_, nil): throw RecordError("missing field \"completion\"")
        default: throw RecordError("\"prompt\" and \"completion\" must both be strings, or both be lists of messages")
        }
    }

    // MARK: Validation

    private func validated(_ turns: [ChatTurn]) throws(RecordError) -> [ChatTurn] {
        let dialogue = turns.first?.role == .system ? turns.dropFirst() : turns[...]
        guard !dialogue.isEmpty else { throw RecordError("no user or assistant message") }
        for (offset, turn) in dialogue.enumerated() {
            let index = offset + (turns.count - dialogue.count)
            let expected: ChatTurn.Role = offset % 2 == 0 ? .user : .assistant
            guard turn.role == expected else {
                let reason = turn.role == .system ? "a system message must come first, and only once"
                    : "roles must alternate user/assistant, starting with user"
                throw RecordError("message \(index) is \(turn.role.rawValue) where \(expected.rawValue) was expected (\(reason))")
            }
            if turn.role == .assistant && turn.content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw RecordError("message \(index): empty assistant turn (nothing to learn from)")
            }
        }
        guard dialogue.last?.role == .assistant else {
            throw RecordError("the last message is from the user; a training sample ends with the assistant's answer")
        }
        return turns
    }

    private func string(_ object: [String: Any], _ key: String) throws(RecordError) -> String {
        guard let value = object[key] else { throw RecordError("missing field \"\(key)\"") }
        guard let text = value as? String else { throw RecordError("\"\(key)\" must be a string") }
        return text
    }

    private func optionalString(_ object: [String: Any], _ key: String) throws(RecordError) -> String? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw RecordError("\"\(key)\" must be a string") }
        return text
    }
}
