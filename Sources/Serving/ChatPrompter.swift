import DataPipeline
import Foundation

/// One chat message (OpenAI's `messages[i]`).
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// How chat messages become the engine's prompt: the model's own chat template, rendered as
/// transformers' `apply_chat_template(messages, add_generation_prompt=True, tokenize=True)`
/// does, so a fine-tuned model is prompted exactly as `meshlm sft` trained it.
///
/// The template is the one in the checkpoint (`chat_template.jinja`, or `tokenizer_config.json`'s
/// `chat_template`: what `meshlm sft` and `ckpt import-hf` save), or a `.jinja` file given
/// instead. Its text is encoded with special-token texts (`<|im_end|>`) becoming their ids.
/// Generation stops at the template's end of turn, found by rendering: what the template writes
/// after an assistant answer (`<|im_end|>`, `<|eot_id|>`, `</s>`…) is a stop token when it is one
/// special token, else a stop string.
///
/// A model without a template (a base model straight from pretraining) gets the plain layout:
/// `Role: content` per message, a blank line between, then `Assistant:`; it stops at `\nUser:`.
public struct ChatPrompter: Sendable {
    enum Layout: Sendable {
        case template(ChatTemplateRenderer, specialTokens: [String: String])
        case plain
    }

    let layout: Layout
    let tokenizer: any Tokenizer
    /// Where the template came from, for logs.
    public let source: String
    /// What the template writes after an answer, without surrounding whitespace (nil: nothing).
    public let endOfTurn: String?
    public let stopStrings: [String]
    public let stopTokens: [Int32]

    /// The plain layout.
    public init(plain tokenizer: any Tokenizer) {
        (layout, self.tokenizer, source, endOfTurn) = (.plain, tokenizer, "plain (Role: content)", nil)
        (stopStrings, stopTokens) = (["\nUser:"], [])
    }

    /// A Jinja chat template; throws when it does not parse.
    public init(template: String, specialTokens: [String: String] = [:], tokenizer: any Tokenizer,
                source: String) throws(ServingError) {
        let renderer: ChatTemplateRenderer
        do {
            renderer = try ChatTemplateRenderer(template: template)
        } catch {
            throw ServingError(.checkpoint, "chat template \(source): \(error)")
        }
        (layout, self.tokenizer, self.source) = (.template(renderer, specialTokens: specialTokens), tokenizer, source)
        let endOfTurn = Self.endOfTurn(renderer, specialTokens: specialTokens)
        self.endOfTurn = endOfTurn
        guard let endOfTurn else {
            (stopStrings, stopTokens) = ([], [])
            return
        }
        let ids = tokenizer.encodeWithSpecialTokens(endOfTurn)
        if ids.count == 1, tokenizer.decode(ids).isEmpty {
            // One special token: its text never reaches the output, so only its id can stop.
            (stopStrings, stopTokens) = ([], ids)
        } else {
            (stopStrings, stopTokens) = ([endOfTurn], [])
        }
    }

    /// The template of the checkpoint at `stepDirectory` (or the `.jinja` file `override`), the
    /// plain layout when it has none.
    public static func load(stepDirectory: String, override: String? = nil,
                            tokenizer: any Tokenizer) throws(ServingError) -> ChatPrompter {
        if let override {
            guard let data = FileManager.default.contents(atPath: override), let text = String(data: data, encoding: .utf8) else {
                throw ServingError(.checkpoint, "--chat-template \(override): no such file, or not UTF-8 (give a .jinja file)")
            }
            let own = try? TokenizerChatTemplates.load(directory: stepDirectory)
            return try ChatPrompter(template: text, specialTokens: own?.specialTokens ?? [:], tokenizer: tokenizer, source: override)
        }
        let templates: TokenizerChatTemplates?, text: String?
        do {
            templates = try TokenizerChatTemplates.find(directory: stepDirectory)
            text = try templates?.template()
        } catch {
            throw ServingError(.checkpoint, "\(error)")
        }
        guard let templates, let text else { return ChatPrompter(plain: tokenizer) }
        return try ChatPrompter(template: text, specialTokens: templates.specialTokens, tokenizer: tokenizer,
                                source: stepDirectory)
    }

    /// The prompt text of `messages`, ending where the assistant's reply begins.
    public func text(_ messages: [ChatMessage]) throws(ServingError) -> String {
        switch layout {
        case .plain:
            return messages.map { Self.capitalized($0.role) + ": " + $0.content + "\n\n" }.joined() + "Assistant:"
        case .template(let renderer, let specialTokens):
            do {
                return try renderer.render(conversation: messages.map { ($0.role, $0.content) }, addGenerationPrompt: true,
                                           specialTokens: specialTokens)
            } catch {
                throw ServingError(.invalidRequest, "the chat template refused the messages: \(error)", parameter: "messages")
            }
        }
    }

    /// The prompt ids of `messages`.
    public func prompt(_ messages: [ChatMessage]) throws(ServingError) -> [Int32] {
        encode(try text(messages))
    }

    /// The prompt ids of a text `text(_:)` rendered.
    public func encode(_ text: String) -> [Int32] {
        switch layout {
        case .plain: return tokenizer.encode(text)
        case .template: return tokenizer.encodeWithSpecialTokens(text)
        }
    }

    /// What the template writes after an answer: the rendering of a question and its answer from
    /// the answer's end (nil: nothing, or the template refuses that conversation).
    static func endOfTurn(_ renderer: ChatTemplateRenderer, specialTokens: [String: String]) -> String? {
        let answer = "MESHLM-ANSWER-7f3a"
        let question: [(role: String, content: String)] = [("user", "Hello?")]
        let full: String
        do {
            full = try renderer.render(conversation: question + [("assistant", answer)], specialTokens: specialTokens)
        } catch {
            // Not every template renders every conversation; without an end of turn, generation
            // stops at the tokenizer's EOS.
            return nil
        }
        guard let range = full.range(of: answer, options: .backwards) else { return nil }
        let tail = full[range.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
        return tail.isEmpty ? nil : tail
    }

    static func capitalized(_ role: String) -> String {
        guard let first = role.first else { return role }
        return first.uppercased() + role.dropFirst()
    }
}
