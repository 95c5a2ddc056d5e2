import DataPipeline
import Foundation
import Serving
import Testing

@Suite struct ChatPrompterTests {
    static let chatML = """
        {% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
        {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
        """

    /// A byte-level BPE tokenizer whose special tokens include ChatML's markers.
    static let chatTokenizer: BPETokenizer? = {
        let counts = PieceCounts()
        for text in ["What is 17 plus 25? 17 plus 25 is 42.", "Hello there, how are you?", "user assistant system"] {
            counts.add(document: text)
        }
        let specials = ["<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
        guard let trainer = try? BPETrainer(options: .init(vocabularySize: 300, specialTokens: specials, minimumFrequency: 1)) else { return nil }
        return try? BPETokenizer(model: trainer.train(counts), name: "chat-300.json")
    }()

    static let messages = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "What is 17 plus 25?")]

    @Test func aSpecialEndOfTurnStopsByIdAndMarkersBecomeTheirIds() throws {
        let tokenizer = try #require(Self.chatTokenizer)
        let prompter = try ChatPrompter(template: Self.chatML, tokenizer: tokenizer, source: "test")
        let text = try prompter.text(Self.messages)
        #expect(text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 17 plus 25?<|im_end|>\n<|im_start|>assistant\n")
        let ids = try prompter.prompt(Self.messages)
        #expect(ids == tokenizer.encodeWithSpecialTokens(text))
        let imStart = tokenizer.encodeWithSpecialTokens("<|im_start|>"), imEnd = tokenizer.encodeWithSpecialTokens("<|im_end|>")
        #expect(imStart.count == 1 && imEnd.count == 1)
        #expect(ids.filter { $0 == imStart[0] }.count == 3, "each marker one id, as transformers tokenizes a rendered chat")
        #expect(prompter.endOfTurn == "<|im_end|>")
        #expect(prompter.stopTokens == imEnd && prompter.stopStrings.isEmpty)
    }

    @Test func withoutSpecialTokensTheEndOfTurnIsAStopString() throws {
        let prompter = try ChatPrompter(template: Self.chatML, tokenizer: ByteTokenizer(), source: "test")
        let text = try prompter.text(Self.messages)
        #expect(try prompter.prompt(Self.messages) == ByteTokenizer().encode(text))
        #expect(prompter.stopStrings == ["<|im_end|>"] && prompter.stopTokens.isEmpty)
    }

    /// The end of turn of every template of the parity fixture, as jinja2 renders it (what follows
    /// an answer after the question's generation prompt, computed with jinja2 3.1 and transformers'
    /// environment; whitespace trimmed).
    @Test(arguments: [
        ("chatml", "<|im_end|>"), ("deepseek-r1", "<｜end▁of▁sentence｜>"), ("gemma-2-2b-it", "<end_of_turn>"),
        ("gemma-3-1b-it", "<end_of_turn>"), ("llama-3.1-8b-instruct", "<|eot_id|>"), ("llama-3.2-3b-instruct", "<|eot_id|>"),
        ("mistral-7b-instruct-v0.1", "</s>"), ("mistral-nemo-instruct-2407", "</s>"), ("qwen2.5-7b-instruct", "<|im_end|>"),
        ("qwen3-0.6b", "<|im_end|>"), ("qwen3.5-4b", "<|im_end|>"), ("smollm2-135m-instruct", "<|im_end|>"),
    ])
    func realTemplatesEndTheirTurns(name: String, endOfTurn: String) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let path = root + "/Tests/DataPipelineTests/Fixtures/chat_templates/\(name).jinja"
        let template = try #require(FileManager.default.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) })
        let prompter = try ChatPrompter(template: template, specialTokens: ["bos_token": "<s>", "eos_token": "</s>"],
                                        tokenizer: ByteTokenizer(), source: name)
        #expect(prompter.endOfTurn == endOfTurn)
        #expect(try prompter.text([ChatMessage(role: "user", content: "Hello?")]).contains("Hello?"))
    }

    @Test func aCheckpointWithoutATemplateGetsThePlainLayoutAndABrokenOneIsAnError() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let plain = try ChatPrompter.load(stepDirectory: directory, tokenizer: ByteTokenizer())
        #expect(try plain.text(Self.messages) == "System: Be brief.\n\nUser: What is 17 plus 25?\n\nAssistant:")
        #expect(plain.stopStrings == ["\nUser:"])

        try Data(Self.chatML.utf8).write(to: URL(fileURLWithPath: directory + "/chat_template.jinja"))
        let own = try ChatPrompter.load(stepDirectory: directory, tokenizer: ByteTokenizer())
        #expect(own.endOfTurn == "<|im_end|>" && own.source == directory)

        try Data("{% for m in messages %}{{ m.content }".utf8).write(to: URL(fileURLWithPath: directory + "/chat_template.jinja"))
        #expect { _ = try ChatPrompter.load(stepDirectory: directory, tokenizer: ByteTokenizer()) } throws: { error in
            "\(error)".contains("chat template \(directory)")
        }
        let override = directory + "/chatml.jinja"
        try Data(Self.chatML.utf8).write(to: URL(fileURLWithPath: override))
        #expect(try ChatPrompter.load(stepDirectory: directory, override: override, tokenizer: ByteTokenizer()).source == override)
        #expect { _ = try ChatPrompter.load(stepDirectory: directory, override: directory + "/missing.jinja", tokenizer: ByteTokenizer()) } throws: { error in
            "\(error)".contains("--chat-template \(directory)/missing.jinja: no such file")
        }
    }

    @Test func aTemplateThatRaisesForTheMessagesIsAnInvalidRequest() throws {
        let template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}" + Self.chatML
        let prompter = try ChatPrompter(template: template, tokenizer: ByteTokenizer(), source: "test")
        #expect { _ = try prompter.prompt(Self.messages) } throws: { error in
            "\(error)".contains("Conversations must start with the user")
        }
    }
}
