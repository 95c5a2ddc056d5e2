import DataPipeline
import Foundation
import Testing

/// Where `TokenizerChatTemplates.load` finds templates and special tokens in a tokenizer directory.
@Suite struct ChatTemplateLoaderTests {
    @Test func stringTemplateInTokenizerConfig() throws {
        let directory = scratchDirectory()
        try write(#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null, "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}"#,
                  to: join(directory, "tokenizer_config.json"))
        let loaded = try TokenizerChatTemplates.load(directory: directory)
        #expect(loaded.specialTokens == ["bos_token": "<s>", "eos_token": "</s>"])
        #expect(Array(loaded.templates.keys) == ["default"])
        let text = try loaded.renderer().render(conversation: [(role: "user", content: "hi")], specialTokens: loaded.specialTokens)
        #expect(text == "<s>hi</s>")
    }

    @Test func namedTemplateListPicksDefaultOrToolUse() throws {
        let directory = scratchDirectory()
        try write(#"{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}, {"name": "rag", "template": "R"}]}"#,
                  to: join(directory, "tokenizer_config.json"))
        let loaded = try TokenizerChatTemplates.load(directory: directory)
        #expect(try loaded.template() == "D")
        #expect(try loaded.template(hasTools: true) == "T")
        #expect(try loaded.template(named: "rag") == "R")
        expectDataError("\(directory): no chat template named 'chat' (available: default, rag, tool_use)") {
            _ = try loaded.template(named: "chat")
        }
    }

    @Test func listWithoutDefaultNeedsAName() throws {
        let directory = scratchDirectory()
        try write(#"{"chat_template": [{"name": "rag", "template": "R"}, {"name": "tool_use", "template": "T"}]}"#, to: join(directory, "tokenizer_config.json"))
        let loaded = try TokenizerChatTemplates.load(directory: directory)
        expectDataError("\(directory): several chat templates and none named 'default'; choose one of: rag, tool_use") { _ = try loaded.template() }
    }

    @Test func jinjaFileWinsOverTokenizerConfig() throws {
        let directory = scratchDirectory()
        try write(#"{"chat_template": "from config", "eos_token": "<eos>"}"#, to: join(directory, "tokenizer_config.json"))
        try write("from file\n", to: join(directory, "chat_template.jinja"))
        try FileManager.default.createDirectory(atPath: join(directory, "additional_chat_templates"), withIntermediateDirectories: true)
        try write("extra", to: join(directory, "additional_chat_templates/tool_use.jinja"))
        let loaded = try TokenizerChatTemplates.load(directory: directory)
        #expect(loaded.templates == ["default": "from file\n", "tool_use": "extra"])
        #expect(loaded.specialTokens == ["eos_token": "<eos>"])
    }

    @Test func processorChatTemplateJSON() throws {
        let directory = scratchDirectory()
        try write(#"{"chat_template": "P"}"#, to: join(directory, "chat_template.json"))
        #expect(try TokenizerChatTemplates.load(directory: directory).templates == ["default": "P"])
    }

    @Test func missingTemplateAndBadJSONAreNamed() throws {
        let directory = scratchDirectory()
        try write(#"{"eos_token": "</s>"}"#, to: join(directory, "tokenizer_config.json"))
        expectDataError("\(directory): no chat template (looked for chat_template.jinja, the chat_template key of tokenizer_config.json, and chat_template.json)") {
            _ = try TokenizerChatTemplates.load(directory: directory)
        }
        try write(#"{"chat_template": 3}"#, to: join(directory, "tokenizer_config.json"))
        expectDataError("\(directory)/tokenizer_config.json: chat_template must be a string or a list of {name, template}") {
            _ = try TokenizerChatTemplates.load(directory: directory)
        }
        try write(#"{"chat_template": "#, to: join(directory, "tokenizer_config.json"))
        expectDataError("\(directory)/tokenizer_config.json: invalid JSON at byte 18: expected a value") {
            _ = try TokenizerChatTemplates.load(directory: directory)
        }
    }
}
