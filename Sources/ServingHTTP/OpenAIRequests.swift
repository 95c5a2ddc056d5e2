import Foundation
import Serving

/// A JSON value that may be one string or a list (OpenAI's `stop`, `prompt`).
enum StringOrList: Decodable, Sendable {
    case text(String)
    case texts([String])
    case tokens([Int32])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) { self = .text(text) }
        else if let texts = try? container.decode([String].self) { self = .texts(texts) }
        else if let tokens = try? container.decode([Int32].self) { self = .tokens(tokens) }
        else {
            throw DecodingError.typeMismatch(String.self, .init(codingPath: decoder.codingPath,
                                                                debugDescription: "expected a string or a list of strings"))
        }
    }
}

/// The sampling fields both endpoints share (OpenAI's names, plus vLLM's top_k, min_p,
/// repetition_penalty, ignore_eos).
struct SamplingFields: Decodable, Sendable {
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Float?
    var topP: Float?
    var topK: Int?
    var minP: Float?
    var presencePenalty: Float?
    var frequencyPenalty: Float?
    var repetitionPenalty: Float?
    var stop: StringOrList?
    var stopTokenIds: [Int32]?
    var ignoreEos: Bool?
    var seed: UInt64?
    var n: Int?

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", temperature, topP = "top_p"
        case topK = "top_k", minP = "min_p", presencePenalty = "presence_penalty", frequencyPenalty = "frequency_penalty"
        case repetitionPenalty = "repetition_penalty", stop, stopTokenIds = "stop_token_ids", ignoreEos = "ignore_eos", seed, n
    }

    func parameters(defaultMaxTokens: Int, logprobs: Int?) throws(ServingError) -> SamplingParameters {
        var stops: [String] = []
        switch stop {
        case .text(let text): stops = [text]
        case .texts(let texts): stops = texts
        case .tokens: throw ServingError(.invalidRequest, "stop must be a string or a list of strings", parameter: "stop")
        case nil: break
        }
        let parameters = SamplingParameters(
            maxTokens: maxCompletionTokens ?? maxTokens ?? defaultMaxTokens, temperature: temperature ?? 1, topK: topK ?? 0,
            topP: topP ?? 1, minP: minP ?? 0, repetitionPenalty: repetitionPenalty ?? 1,
            presencePenalty: presencePenalty ?? 0, frequencyPenalty: frequencyPenalty ?? 0, stopStrings: stops,
            stopTokens: stopTokenIds ?? [], ignoreEOS: ignoreEos ?? false, seed: seed, logprobs: logprobs,
            sampleCount: n ?? 1)
        try parameters.validate()
        return parameters
    }
}

struct StreamOptions: Decodable, Sendable {
    var includeUsage: Bool?
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

/// `POST /v1/completions`.
struct CompletionRequest: Decodable, Sendable {
    var model: String
    var prompt: StringOrList
    var stream: Bool?
    var streamOptions: StreamOptions?
    var logprobs: Int?
    var echo: Bool?
    var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case model, prompt, stream, streamOptions = "stream_options", logprobs, echo }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        prompt = try container.decode(StringOrList.self, forKey: .prompt)
        stream = try container.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try container.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        logprobs = try container.decodeIfPresent(Int.self, forKey: .logprobs)
        echo = try container.decodeIfPresent(Bool.self, forKey: .echo)
        sampling = try SamplingFields(from: decoder)
    }
}

/// `POST /v1/chat/completions`.
struct ChatRequest: Decodable, Sendable {
    struct Message: Decodable, Sendable {
        /// OpenAI's `content`: a string or a list of parts, each `{"type": "text", "text": …}`
        /// or another kind (`image_url`, `input_audio`, …) this server cannot read.
        enum Content: Decodable, Sendable {
            case text(String)
            case parts([Part])

            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let text = try? container.decode(String.self) { self = .text(text) }
                else if let parts = try? container.decode([Part].self) { self = .parts(parts) }
                else {
                    throw DecodingError.typeMismatch(String.self, .init(codingPath: decoder.codingPath,
                                                                        debugDescription: "expected a string or a list of content parts ({\"type\": \"text\", \"text\": …})"))
                }
            }
        }

        struct Part: Decodable, Sendable {
            var type: String
            var text: String?
        }

        var role: String
        var content: Content?
        var toolCalls: [ToolCall]?

        /// Only whether it is there matters: this server reads no tool calls.
        struct ToolCall: Decodable, Sendable {}

        enum CodingKeys: String, CodingKey { case role, content, toolCalls = "tool_calls" }

        /// The roles a chat template is given; OpenAI's `tool` (and `developer`) need tool calls
        /// and instructions this server does not implement.
        static let roles = ["system", "user", "assistant"]

        /// The message as the chat template takes it, or why it cannot be: an unknown role, tool
        /// calls, `content: null` (OpenAI allows it only beside an assistant's tool calls), or a
        /// part other than text. Text parts are joined in order.
        func chatMessage(index: Int) throws(ServingError) -> ChatMessage {
            guard Self.roles.contains(role) else {
                throw ServingError(.invalidRequest, "messages[\(index)].role '\(role)' is not supported: a message's role is one of \(Self.roles.joined(separator: ", "))",
                                   parameter: "messages[\(index)].role")
            }
            if let toolCalls, !toolCalls.isEmpty {
                throw ServingError(.invalidRequest, "messages[\(index)] has tool_calls: this server does not take tool calls; send the assistant's reply as text",
                                   parameter: "messages[\(index)].tool_calls")
            }
            switch content {
            case .text(let text):
                return ChatMessage(role: role, content: text)
            case .parts(let parts):
                var text = ""
                for (partIndex, part) in parts.enumerated() {
                    let field = "messages[\(index)].content[\(partIndex)]"
                    guard part.type == "text" else {
                        throw ServingError(.invalidRequest, "\(field) is a '\(part.type)' part: this server reads text parts only ({\"type\": \"text\", \"text\": …}); send the message's text",
                                           parameter: field)
                    }
                    guard let partText = part.text else {
                        throw ServingError(.invalidRequest, "\(field) is a text part without 'text'", parameter: field + ".text")
                    }
                    text += partText
                }
                return ChatMessage(role: role, content: text)
            case nil:
                throw ServingError(.invalidRequest, "messages[\(index)].content is null or missing: only an assistant message with tool_calls may leave it out, and this server takes no tool calls; give the message's text",
                                   parameter: "messages[\(index)].content")
            }
        }
    }
    var model: String
    var messages: [Message]
    var stream: Bool?
    var streamOptions: StreamOptions?
    var logprobs: Bool?
    var topLogprobs: Int?
    var sampling: SamplingFields

    enum CodingKeys: String, CodingKey {
        case model, messages, stream, streamOptions = "stream_options", logprobs, topLogprobs = "top_logprobs"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        messages = try container.decode([Message].self, forKey: .messages)
        stream = try container.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try container.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        logprobs = try container.decodeIfPresent(Bool.self, forKey: .logprobs)
        topLogprobs = try container.decodeIfPresent(Int.self, forKey: .topLogprobs)
        sampling = try SamplingFields(from: decoder)
    }
}

/// Decodes a request body, turning JSON and schema errors into messages that name the field.
func decodeRequest<Request: Decodable>(_ type: Request.Type, from data: Data) throws(ServingError) -> Request {
    guard (try? JSONSerialization.jsonObject(with: data)) != nil else {
        throw ServingError(.invalidRequest, "the request body is not valid JSON")
    }
    do {
        return try JSONDecoder().decode(type, from: data)
    } catch let error as DecodingError {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: ["."])
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = (path(context).isEmpty ? "" : path(context) + ".") + key.stringValue
            throw ServingError(.invalidRequest, "missing required field '\(field)'", parameter: field)
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let field = path(context)
            throw ServingError(.invalidRequest, "field '\(field)' has the wrong type: \(context.debugDescription)", parameter: field)
        @unknown default:
            throw ServingError(.invalidRequest, "the request does not match the schema: \(error)")
        }
    } catch {
        throw ServingError(.invalidRequest, "the request does not match the schema: \(error)")
    }
}

/// The checks the two endpoints make on a request body before any engine work (decoding, each
/// message, the sampling parameters), on the body alone: the fuzzer's entry (Fuzz/).
public enum OpenAIRequestCheck {
    /// `POST /v1/completions`.
    public static func completion(_ body: Data) throws(ServingError) {
        let request = try decodeRequest(CompletionRequest.self, from: body)
        _ = try request.sampling.parameters(defaultMaxTokens: 16, logprobs: request.logprobs)
    }

    /// `POST /v1/chat/completions`, with a context of `contextLength` tokens.
    public static func chat(_ body: Data, contextLength: Int = 4096) throws(ServingError) {
        let request = try decodeRequest(ChatRequest.self, from: body)
        for (index, message) in request.messages.enumerated() { _ = try message.chatMessage(index: index) }
        _ = try request.sampling.parameters(defaultMaxTokens: contextLength,
                                            logprobs: request.logprobs == true ? (request.topLogprobs ?? 0) : nil)
    }
}
