import DataPipeline

/// One chat message (OpenAI's `messages[i]`).
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// How chat messages become one prompt.
///
/// - `plain` (any tokenizer): each message as `Role: content` on its own line(s), separated by a
///   blank line, then `Assistant:` for the model to continue; generation stops at the next
///   `\nUser:`.
/// - `llama3`: Llama-3's header tokens, `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
///   per message, then the assistant header; generation stops at `<|eot_id|>`. Used when the
///   tokenizer encodes each header marker as one token.
public enum ChatTemplate: Sendable, Equatable {
    case plain
    case llama3(beginOfText: Int32?, endOfTurn: Int32)

    /// Llama-3 when the tokenizer knows its header tokens, plain otherwise.
    public static func detect(_ tokenizer: any Tokenizer) -> ChatTemplate {
        func single(_ marker: String) -> Int32? {
            let ids = tokenizer.encode(marker)
            return ids.count == 1 ? ids[0] : nil
        }
        guard single("<|start_header_id|>") != nil, single("<|end_header_id|>") != nil,
              let endOfTurn = single("<|eot_id|>") else { return .plain }
        return .llama3(beginOfText: single("<|begin_of_text|>"), endOfTurn: endOfTurn)
    }

    /// The prompt ids and the extra stop rules of this template.
    public func render(_ messages: [ChatMessage], tokenizer: any Tokenizer) -> (prompt: [Int32], stopStrings: [String], stopTokens: [Int32]) {
        switch self {
        case .plain:
            var text = ""
            for message in messages {
                text += Self.capitalized(message.role) + ": " + message.content + "\n\n"
            }
            text += "Assistant:"
            return (tokenizer.encode(text), ["\nUser:"], [])
        case .llama3(let beginOfText, let endOfTurn):
            var text = ""
            for message in messages {
                text += "<|start_header_id|>\(message.role)<|end_header_id|>\n\n\(message.content)<|eot_id|>"
            }
            text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
            return ((beginOfText.map { [$0] } ?? []) + tokenizer.encode(text), [], [endOfTurn])
        }
    }

    static func capitalized(_ role: String) -> String {
        guard let first = role.first else { return role }
        return first.uppercased() + role.dropFirst()
    }
}
