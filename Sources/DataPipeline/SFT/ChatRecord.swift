import Foundation

/// A problem with one record, before the file and line are put in front of it.
struct RecordError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// One JSON object of a chat data file, and the reading of the fields that SFT and preference
/// files share: strings, OpenAI message lists, ShareGPT conversations, Alpaca's prompt fields,
/// and the rules every conversation MeshLM trains on follows (`validated`).
struct ChatRecord {
    let object: [String: Any]

    var keys: [String] { object.keys.sorted() }

    func has(_ key: String) -> Bool { object[key] != nil }

    /// The value at `key`, which must be there.
    func value(_ key: String) throws(RecordError) -> Any {
        guard let value = object[key] else { throw RecordError("missing field \"\(key)\"") }
        return value
    }

    func string(_ key: String) throws(RecordError) -> String {
        guard let text = try value(key) as? String else { throw RecordError("\"\(key)\" must be a string") }
        return text
    }

    /// The string at `key`, or nil when the key is absent or null.
    func optionalString(_ key: String) throws(RecordError) -> String? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw RecordError("\"\(key)\" must be a string") }
        return text
    }

    // MARK: OpenAI messages

    /// The list of `{role, content}` messages at `field`.
    func messages(_ field: String) throws(RecordError) -> [ChatTurn] {
        guard let messages = object[field] as? [Any] else {
            throw RecordError(object[field] == nil ? "missing field \"\(field)\"" : "\"\(field)\" must be a list of messages")
        }
        return try messages.enumerated().map { (index, message) throws(RecordError) in
            try Self.message(message, at: "\"\(field)\"[\(index)]")
        }
    }

    /// One `{role, content}` message; `location` names it in errors.
    static func message(_ value: Any, at location: String) throws(RecordError) -> ChatTurn {
        guard let message = value as? [String: Any] else { throw RecordError("\(location) is not an object") }
        guard let name = message["role"] as? String else { throw RecordError("\(location) has no string \"role\"") }
        guard let role = ChatTurn.Role(rawValue: name) else {
            throw RecordError("\(location): unknown role \"\(name)\" (expected system, user or assistant)")
        }
        return ChatTurn(role, try content(of: message["content"], at: location))
    }

    /// A message's content: a string, or a list of parts whose text parts are joined.
    private static func content(of value: Any?, at location: String) throws(RecordError) -> String {
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

    // MARK: ShareGPT

    /// The optional `system` field, then the messages of `conversations`.
    func shareGPTConversation(tags: ShareGPTTags) throws(RecordError) -> [ChatTurn] {
        guard let messages = object["conversations"] as? [Any] else {
            throw RecordError(object["conversations"] == nil ? "missing field \"conversations\"" : "\"conversations\" must be a list of messages")
        }
        var turns: [ChatTurn] = []
        if let system = try optionalString("system"), !system.isEmpty { turns.append(ChatTurn(.system, system)) }
        for (index, message) in messages.enumerated() {
            turns.append(try Self.shareGPTMessage(message, at: "\"conversations\"[\(index)]", tags: tags))
        }
        return turns
    }

    /// One `{from, value}` message (tag names as `tags` say); `location` names it in errors.
    static func shareGPTMessage(_ value: Any, at location: String, tags: ShareGPTTags) throws(RecordError) -> ChatTurn {
        guard let message = value as? [String: Any] else { throw RecordError("\(location) is not an object") }
        guard let tag = message[tags.roleTag] as? String else {
            throw RecordError("\(location) has no string \"\(tags.roleTag)\" (the role tag; set it if this file names it otherwise)")
        }
        let roles = [tags.systemTag: ChatTurn.Role.system, tags.userTag: .user, tags.assistantTag: .assistant]
        guard let role = roles[tag] else {
            throw RecordError("\(location): unknown role \"\(tag)\" (expected \"\(tags.systemTag)\", \"\(tags.userTag)\" or \"\(tags.assistantTag)\"; the tags can be remapped)")
        }
        guard let content = message[tags.contentTag] as? String else {
            throw RecordError("\(location) has no string \"\(tags.contentTag)\" (the content tag)")
        }
        return ChatTurn(role, content)
    }

    // MARK: Alpaca

    /// Alpaca's prompt: the optional system turn, the `history` pairs, and the user turn of
    /// `instruction` and `input` joined with a newline (as LlamaFactory does).
    func alpacaPrompt() throws(RecordError) -> [ChatTurn] {
        let instruction = try string("instruction")
        let input = try optionalString("input") ?? ""
        var turns: [ChatTurn] = []
        if let system = try optionalString("system"), !system.isEmpty { turns.append(ChatTurn(.system, system)) }
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
        return turns
    }

    // MARK: Validation

    /// `turns` when they are a conversation to train on: at most one system turn, first; then
    /// user and assistant turns alternating, starting with a user turn and ending with an
    /// assistant turn; no assistant turn empty.
    static func validated(_ turns: [ChatTurn]) throws(RecordError) -> [ChatTurn] {
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
            if turn.role == .assistant && isBlank(turn.content) {
                throw RecordError("message \(index): empty assistant turn (nothing to learn from)")
            }
        }
        guard dialogue.last?.role == .assistant else {
            throw RecordError("the last message is from the user; a training sample ends with the assistant's answer")
        }
        return turns
    }

    static func isBlank(_ text: String) -> Bool {
        text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
    }
}
