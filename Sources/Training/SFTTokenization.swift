import DataPipeline
import Foundation

/// Turns `SFTSample`s into token ids with their loss mask, through the tokenizer's chat template.
///
/// The mask comes from rendering, not from `{% generation %}` tags (which most templates lack):
/// for each assistant turn k the conversation is rendered up to the turn before it with the
/// generation prompt (the prompt the model sees) and up to and including turn k. What the second
/// adds to the first is the assistant's answer with the template's end-of-turn marker, which is
/// supervised; the rest is prompt. Each such span is encoded on its own and the ids concatenated
/// (as LlamaFactory does), so a span boundary never merges tokens across prompt and answer; the
/// template's special-token texts (`<|im_start|>`) become their ids, as transformers tokenizes a
/// rendered chat and as serving prompts (`ChatPrompter`). A
/// template that renders earlier turns differently once later ones follow (some drop reasoning
/// from past turns) breaks the prefix rule and is refused, naming the sample.
///
/// Plain prompt/completion samples are not templated: prompt ids, then completion ids and the
/// tokenizer's EOS, the completion and EOS supervised. No BOS is added by MeshLM: the template
/// writes `bos_token` where the model expects it, so there is never a second one.
public struct SFTTokenization {
    public struct Options: Sendable {
        /// Train on every token, prompts included (LlamaFactory's `train_on_prompt`).
        public var trainOnPrompt = false
        /// Only the last assistant turn is supervised (LlamaFactory's `mask_history`).
        public var maskHistory = false

        public init(trainOnPrompt: Bool = false, maskHistory: Bool = false) {
            self.trainOnPrompt = trainOnPrompt
            self.maskHistory = maskHistory
        }
    }

    /// ChatML, for tokenizers that bring no chat template of their own.
    public static let chatML = """
        {% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
        {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
        """

    public let tokenizer: any Tokenizer
    public let renderer: ChatTemplateRenderer
    public let specialTokens: [String: String]
    public let options: Options

    public init(tokenizer: any Tokenizer, renderer: ChatTemplateRenderer, specialTokens: [String: String] = [:],
                options: Options = Options()) {
        self.tokenizer = tokenizer
        self.renderer = renderer
        self.specialTokens = specialTokens
        self.options = options
    }

    public func tokenize(_ sample: SFTSample) throws(DataError) -> TokenizedSample {
        var result = TokenizedSample(ids: [], supervised: [])
        func append(_ text: String, supervised: Bool, template: Bool) {
            guard !text.isEmpty else { return }
            // A template's markers are special tokens where the tokenizer has them (as
            // transformers tokenizes a rendered chat); plain samples' text is only text.
            let ids = template ? tokenizer.encodeWithSpecialTokens(text) : tokenizer.encode(text)
            result.ids += ids
            result.supervised += [Bool](repeating: supervised || options.trainOnPrompt, count: ids.count)
        }
        switch sample.content {
        case .text(let prompt, let completion):
            append(prompt, supervised: false, template: false)
            append(completion, supervised: true, template: false)
            result.ids.append(tokenizer.eosId)
            result.supervised.append(true)
        case .conversation(let turns):
            let answers = turns.indices.filter { turns[$0].role == .assistant }
            var rendered = ""
            for answer in answers {
                let prompt = try render(turns[..<answer], generationPrompt: true, sample: sample)
                let full = try render(turns[...answer], generationPrompt: false, sample: sample)
                guard prompt.hasPrefix(rendered), full.hasPrefix(prompt) else {
                    throw DataError("\(sample.source): the chat template renders the conversation before message \(answer) differently once that message follows, so the answer's tokens cannot be told from the prompt's")
                }
                append(String(prompt.dropFirst(rendered.count)), supervised: false, template: true)
                append(String(full.dropFirst(prompt.count)), supervised: !options.maskHistory || answer == answers.last, template: true)
                rendered = full
            }
        }
        return result
    }

    private func render(_ turns: ArraySlice<ChatTurn>, generationPrompt: Bool, sample: SFTSample) throws(DataError) -> String {
        let messages: [ChatValue] = turns.map { .object(["role": .string($0.role.rawValue), "content": .string($0.content)]) }
        do {
            return try renderer.render(messages: messages, addGenerationPrompt: generationPrompt, specialTokens: specialTokens)
        } catch {
            throw DataError("\(sample.source): the chat template refused the conversation: \(error)")
        }
    }
}
