import Foundation

/// Response bodies in OpenAI's schema (the fields the official client's strict validation
/// requires; notes in docs/serving.md).
struct ModelList: Encodable {
    struct Model: Encodable {
        var id: String
        var object = "model"
        var created: Int
        var ownedBy = "meshlm"
        var maxModelLength: Int
        /// A LoRA adapter's directory and the base it adapts (vLLM's fields); nil for the base.
        var root: String?
        var parent: String?
        enum CodingKeys: String, CodingKey {
            case id, object, created, ownedBy = "owned_by", maxModelLength = "max_model_len", root, parent
        }
    }
    var object = "list"
    var data: [Model]
}

struct Usage: Encodable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }
    enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens" }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// `/v1/completions` logprobs: parallel lists per generated token.
struct CompletionLogprobs: Encodable {
    var tokens: [String] = []
    var tokenLogprobs: [Float] = []
    var topLogprobs: [[String: Float]] = []
    var textOffset: [Int] = []
    enum CodingKeys: String, CodingKey { case tokens, tokenLogprobs = "token_logprobs", topLogprobs = "top_logprobs", textOffset = "text_offset" }
}

struct CompletionChoice: Encodable {
    var index = 0
    var text: String
    var finishReason: String?
    var logprobs: CompletionLogprobs?
    enum CodingKeys: String, CodingKey { case index, text, finishReason = "finish_reason", logprobs }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(index, forKey: .index)
        try container.encode(text, forKey: .text)
        try container.encode(finishReason, forKey: .finishReason)
        try container.encode(logprobs, forKey: .logprobs)
    }
}

struct Completion: Encodable {
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [CompletionChoice]
    var usage: Usage?
}

/// `/v1/chat/completions` logprobs.
struct ChatLogprobs: Encodable {
    struct Top: Encodable {
        var token: String
        var logprob: Float
        var bytes: [UInt8]
    }
    struct Entry: Encodable {
        var token: String
        var logprob: Float
        var bytes: [UInt8]
        var topLogprobs: [Top]
        enum CodingKeys: String, CodingKey { case token, logprob, bytes, topLogprobs = "top_logprobs" }
    }
    var content: [Entry]
}

struct ChatMessageBody: Encodable {
    var role = "assistant"
    var content: String
}

struct ChatChoice: Encodable {
    var index = 0
    var message: ChatMessageBody
    var finishReason: String
    var logprobs: ChatLogprobs?
    enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason", logprobs }
}

struct ChatCompletion: Encodable {
    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [ChatChoice]
    var usage: Usage
}

struct ChatDelta: Encodable {
    var role: String?
    var content: String?
}

struct ChatChunkChoice: Encodable {
    var index = 0
    var delta: ChatDelta
    var finishReason: String?
    var logprobs: ChatLogprobs?
    enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason", logprobs }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(index, forKey: .index)
        try container.encode(delta, forKey: .delta)
        // Explicit null until the last chunk, as OpenAI sends it.
        try container.encode(finishReason, forKey: .finishReason)
        try container.encodeIfPresent(logprobs, forKey: .logprobs)
    }
}

struct ChatChunk: Encodable {
    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [ChatChunkChoice]
    var usage: Usage?
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
struct ErrorBody: Encodable {
    struct Detail: Encodable {
        var message: String
        var type: String
        var param: String?
        var code: String?
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(message, forKey: .message)
            try container.encode(type, forKey: .type)
            try container.encode(param, forKey: .param)
            try container.encode(code, forKey: .code)
        }
        enum CodingKeys: String, CodingKey { case message, type, param, code }
    }
    var error: Detail
}

func encodeJSON<Value: Encodable>(_ value: Value) -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    // Encoding these plain structs cannot fail; an empty object keeps the type total.
    return (try? encoder.encode(value)) ?? Data("{}".utf8)
}
