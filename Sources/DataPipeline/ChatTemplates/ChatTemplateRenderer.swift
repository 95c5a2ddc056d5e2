import Foundation

/// A tokenizer's chat template (Hugging Face's Jinja `chat_template`), parsed once and rendered
/// per conversation exactly as transformers' `apply_chat_template(..., tokenize=False)` does.
///
/// transformers renders with jinja2 (`trim_blocks`, `lstrip_blocks`, the `loopcontrols`
/// extension), a `raise_exception(message)` global, `strftime_now(format)`, and a `tojson` that
/// keeps non-ASCII text; its variables are `messages`, `tools`, `documents`,
/// `add_generation_prompt`, the tokenizer's special tokens (`bos_token`, `eos_token`, …) and any
/// extra keyword arguments. This renderer reproduces that environment; `docs/sft.md` lists the
/// Jinja subset it supports.
public struct ChatTemplateRenderer: Sendable {
    /// The template text as given.
    public let source: String
    private let nodes: [TemplateNode]

    /// Names transformers passes itself; extra variables may not reuse them.
    private static let reservedNames: Set<String> = ["messages", "tools", "documents", "add_generation_prompt"]

    /// Parses `template`; a syntax error names the line and what was expected.
    public init(template: String) throws {
        self.source = template
        self.nodes = try TemplateParser.parse(try TemplateLexer.tokenize(template))
    }

    /// Renders one conversation.
    ///
    /// - Parameters:
    ///   - messages: the conversation, each message an object (`{"role": …, "content": …}`, plus
    ///     whatever the template reads: `tool_calls`, `reasoning_content`, …).
    ///   - addGenerationPrompt: append the header that starts the assistant's reply.
    ///   - specialTokens: the tokenizer's `bos_token`, `eos_token`, … as text.
    ///   - tools: tool schemas, or nil (the template then sees `tools` as `None`).
    ///   - documents: retrieval documents, or nil (`None`).
    ///   - extra: further template variables (`enable_thinking`, `date_string`, …).
    ///   - now: the time `strftime_now` formats, in the current time zone.
    /// - Throws: `ChatTemplateError`; `.raised` carries the template's own message verbatim.
    public func render(messages: [ChatValue], addGenerationPrompt: Bool = false, specialTokens: [String: String] = [:],
                       tools: [ChatValue]? = nil, documents: [ChatValue]? = nil, extra: [String: ChatValue] = [:],
                       now: Date = Date()) throws -> String {
        var variables: [String: TemplateValue] = [:]
        for (name, token) in specialTokens { variables[name] = .string(token) }
        for (name, value) in extra {
            guard !Self.reservedNames.contains(name) else {
                throw ChatTemplateError(.render, "extra variable '\(name)' clashes with the variable the renderer sets itself")
            }
            variables[name] = TemplateValue(value)
        }
        variables["messages"] = .list(messages.map(TemplateValue.init))
        variables["tools"] = tools.map { .list($0.map(TemplateValue.init)) } ?? TemplateValue.none
        variables["documents"] = documents.map { .list($0.map(TemplateValue.init)) } ?? TemplateValue.none
        variables["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try render(templateVariables: variables, now: now)
    }

    /// Renders with exactly `variables` and the globals, nothing added: for templates that are
    /// not chat templates (prompt files of synthetic-data recipes) and for engine tests.
    public func render(variables: [String: ChatValue], now: Date = Date()) throws -> String {
        try render(templateVariables: variables.mapValues(TemplateValue.init), now: now)
    }

    private func render(templateVariables: [String: TemplateValue], now: Date) throws -> String {
        let interpreter = TemplateInterpreter(variables: templateVariables, globals: TemplateGlobals.make(now: now))
        return try interpreter.render(nodes)
    }

    /// Renders messages given as plain role and content pairs.
    public func render(conversation: [(role: String, content: String)], addGenerationPrompt: Bool = false,
                       specialTokens: [String: String] = [:], extra: [String: ChatValue] = [:], now: Date = Date()) throws -> String {
        try render(messages: conversation.map { ["role": .string($0.role), "content": .string($0.content)] },
                   addGenerationPrompt: addGenerationPrompt, specialTokens: specialTokens, extra: extra, now: now)
    }
}
