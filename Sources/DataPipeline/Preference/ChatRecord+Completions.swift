import Foundation

/// The fields of preference and KTO records: a prompt with completions, each completion one
/// assistant answer, and JSON numbers and booleans told apart.
extension ChatRecord {
    /// The prompt at `promptKey` completed by each field of `completionKeys`, one sample each:
    /// all strings (plain text, no template), or all message lists (the prompt ending with the
    /// user, each completion one assistant message).
    func completions(of promptKey: String, by completionKeys: [String]) throws(RecordError) -> [SFTSample.Content] {
        let keys = [promptKey] + completionKeys
        let values = try keys.map { key throws(RecordError) in try value(key) }
        let texts = values.compactMap { $0 as? String }
        if texts.count == keys.count {
            return try zip(completionKeys, texts.dropFirst()).map { (key, completion) throws(RecordError) in
                guard !Self.isBlank(completion) else { throw RecordError("empty \"\(key)\": nothing to learn from") }
                return .text(prompt: texts[0], completion: completion)
            }
        }
        guard values.allSatisfy({ $0 is [Any] }) else {
            let kinds = zip(keys, values).map { "\"\($0)\" is \(Self.kind(of: $1))" }.joined(separator: ", ")
            let all = keys.count == 2 ? "both" : "all"
            throw RecordError("\(Self.quoted(keys)) must \(all) be strings (plain text) or \(all) be lists of messages; here \(kinds)")
        }
        let prompt = try Self.prompt(try messages(promptKey), of: promptKey)
        return try completionKeys.map { key throws(RecordError) in
            .conversation(try Self.validated(prompt + [try Self.answer(try messages(key), of: key)]))
        }
    }

    /// The prompt at `key`, which must end with the user message that the completions answer.
    static func prompt(_ turns: [ChatTurn], of key: String) throws(RecordError) -> [ChatTurn] {
        guard turns.last?.role == .user else {
            throw RecordError("\"\(key)\" must end with a user message (the one the completions answer)")
        }
        return turns
    }

    /// The completion at `key` as the one assistant message it must be.
    static func answer(_ turns: [ChatTurn], of key: String) throws(RecordError) -> ChatTurn {
        guard let turn = turns.first else { throw RecordError("empty \"\(key)\": nothing to learn from") }
        guard turns.count == 1, turn.role == .assistant else {
            let found = turns.count == 1 ? "a \(turn.role.rawValue) message" : "\(turns.count) messages"
            throw RecordError("\"\(key)\" must be one assistant message (the answer; earlier turns belong to the prompt), not \(found)")
        }
        guard !isBlank(turn.content) else { throw RecordError("empty \"\(key)\": nothing to learn from") }
        return turn
    }

    /// The number at `key`, or nil when the key is absent or null. A boolean is not a number.
    func optionalNumber(_ key: String) throws(RecordError) -> Double? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, Self.boolean(number) == nil else { throw RecordError("\"\(key)\" must be a number") }
        return number.doubleValue
    }

    /// The boolean at `key`; a number (0, 1) or a string ("true") is refused.
    func boolean(_ key: String) throws(RecordError) -> Bool {
        let value = try value(key)
        guard let flag = Self.boolean(value) else {
            throw RecordError("\"\(key)\" must be true or false (a JSON boolean), not \(Self.kind(of: value)) (\(Self.json(value)))")
        }
        return flag
    }

    /// `value` when it is a JSON boolean. JSONSerialization gives booleans as NSNumbers of their
    /// own class (`__NSCFBoolean`, on Linux as on macOS) and numbers as other NSNumbers; `as? Bool`
    /// would take the numbers 0 and 1 as well.
    static func boolean(_ value: Any) -> Bool? {
        guard let number = value as? NSNumber, type(of: number) == type(of: NSNumber(value: true)) else { return nil }
        return number.boolValue
    }

    private static func kind(of value: Any) -> String {
        switch value {
        case is String: "a string"
        case is [Any]: "a list"
        case is [String: Any]: "an object"
        case is NSNull: "null"
        default: boolean(value) != nil ? "a boolean" : "a number"
        }
    }

    private static func json(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: [value], options: [.fragmentsAllowed]),
              let text = String(data: data, encoding: .utf8) else { return "\(value)" }
        return String(text.dropFirst().dropLast())
    }

    /// `"a" and "b"`, `"a", "b" and "c"`.
    static func quoted(_ keys: [String]) -> String {
        let names = keys.map { "\"\($0)\"" }
        return names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " and " + names[names.count - 1]
    }
}
