import DataPipeline
import Foundation
import Testing

/// The Jinja engine on its own: whitespace rules, scoping, filters, undefined values, and
/// errors with their exact text. Parity with jinja2 itself is in ChatTemplateSnippetTests.
@Suite struct ChatTemplateEngineTests {
    func render(_ template: String, _ variables: [String: ChatValue] = [:]) throws -> String {
        try ChatTemplateRenderer(template: template).render(variables: variables)
    }

    /// The error `body` throws, or nil (recorded as an issue) if it throws none.
    func templateError(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> ChatTemplateError? {
        do {
            try body()
            Issue.record("expected a ChatTemplateError", sourceLocation: sourceLocation)
        } catch let error as ChatTemplateError {
            return error
        } catch {
            Issue.record("expected a ChatTemplateError, got \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    @Test func whitespaceControlAndBlockTrimming() throws {
        // trim_blocks drops the newline after a tag; lstrip_blocks the indentation before it.
        #expect(try render("{% for x in [1, 2] %}\n    {{ x }}\n{% endfor %}\n") == "    1\n    2\n")
        #expect(try render("a  {{- ' b ' -}}  c") == "a b c")
        #expect(try render("{%- if true -%}\n\n  yes  \n{%- endif %}") == "yes")
        #expect(try render("x\n    {# a comment #}\ny") == "x\ny")
        #expect(try render("  {%+ if true %}kept{% endif %}") == "  kept")
    }

    @Test func loopsExposeJinjaLoopVariables() throws {
        let template = "{% for m in items if m != 'skip' %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% else %}none{% endfor %}"
        #expect(try render(template, ["items": ["a", "skip", "b"]]) == "1/2,2/2")
        #expect(try render(template, ["items": []]) == "none")
        #expect(try render("{% for x in range(9) %}{% if x is odd %}{% continue %}{% endif %}{% if x > 5 %}{% break %}{% endif %}{{ x }}{% endfor %}") == "024")
    }

    @Test func namespaceCarriesStateOutOfLoops() throws {
        let template = """
            {%- set ns = namespace(last_user=-1) -%}
            {%- set plain = -1 -%}
            {%- for m in messages -%}
              {%- if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% set plain = loop.index0 %}{% endif -%}
            {%- endfor -%}
            {{ ns.last_user }} {{ plain }}
            """
        let messages: ChatValue = [["role": "user"], ["role": "assistant"], ["role": "user"], ["role": "assistant"]]
        #expect(try render(template, ["messages": messages]) == "2 -1")
    }

    @Test func filtersChatTemplatesUse() throws {
        #expect(try render("{{ '  x  '|trim }}|{{ 'ab'|upper }}|{{ [1, 2, 3]|join('-') }}|{{ missing|default('d') }}|{{ 'a b'|title }}") == "x|AB|1-2-3|d|A B")
        let tools: ChatValue = [["name": "f", "parameters": ["type": "object", "b": 1, "a": "é"]]]
        #expect(try render("{{ tools[0]|tojson }}", ["tools": tools]) == #"{"name": "f", "parameters": {"type": "object", "b": 1, "a": "é"}}"#)
        #expect(try render("{{ {'k': [1]}|tojson(indent=2) }}") == "{\n  \"k\": [\n    1\n  ]\n}")
        let messages: ChatValue = [["role": "user", "content": "a"], ["role": "tool", "content": "b"]]
        #expect(try render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}", ["messages": messages]) == "['a']")
        #expect(try render("{{ 'line1\nline2'|indent(2) }}") == "line1\n  line2")
    }

    @Test func undefinedValuesBehaveAsJinja2Default() throws {
        #expect(try render("[{{ nothing }}][{{ nothing is defined }}][{{ nothing|length }}][{{ 'x' ~ nothing }}]") == "[][False][0][x]")
        #expect(try render("{{ message.content is defined }}", ["message": ["role": "user"]]) == "False")
        let attribute = templateError { _ = try render("{{ nothing.attribute }}") }
        #expect(attribute?.description == "chat template error on line 1: 'nothing' is undefined")
        let arithmetic = templateError { _ = try render("\n{{ message.content + 'x' }}", ["message": [:]]) }
        #expect(attribute?.kind == .render)
        #expect(arithmetic?.description == "chat template error on line 2: 'dict object' has no attribute 'content'")
    }

    @Test func raiseExceptionCarriesTheTemplatesMessage() throws {
        let template = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}ok"
        let renderer = try ChatTemplateRenderer(template: template)
        let error = templateError { _ = try renderer.render(conversation: [(role: "assistant", content: "hi")]) }
        #expect(error == ChatTemplateError(.raised, "Conversation roles must alternate user/assistant/user/assistant/...", line: 1))
        #expect(error?.description == "Conversation roles must alternate user/assistant/user/assistant/...")
        #expect(try renderer.render(conversation: [(role: "user", content: "hi")]) == "ok")
    }

    @Test func syntaxErrorsNameTheLineAndWhatWasExpected() {
        let cases: [(String, String)] = [
            ("a\n{% for m in messages %}\n{{ m }}", "chat template syntax error on line 3: unexpected end of template: expected 'else' or 'endfor' to close the 'for' tag on line 2"),
            ("{% if x %}\n{% endfor %}", "chat template syntax error on line 2: unexpected 'endfor': expected 'elif' or 'else' or 'endif' to close the 'if' tag on line 1"),
            ("\n\n{{ 1 + }}", "chat template syntax error on line 3: expected an expression, found '}}'"),
            ("{% frobnicate %}", "chat template syntax error on line 1: unknown tag 'frobnicate'"),
            ("{{ 'open }}", "chat template syntax error on line 1: unterminated string"),
            ("{# never closed", "chat template syntax error on line 1: missing end of comment tag '#}'"),
            ("{% for x in %}", "chat template syntax error on line 1: expected an expression, found '%}'"),
            ("{{ (1 }}", "chat template syntax error on line 1: unexpected '}', expected ')'"),
            ("{% endif %}", "chat template syntax error on line 1: unexpected 'endif'"),
        ]
        for (template, message) in cases {
            let error = templateError { _ = try ChatTemplateRenderer(template: template) }
            #expect(error?.kind == .syntax, "\(template)")
            #expect(error?.description == message, "\(template)")
        }
    }

    @Test func hostileInputFailsWithoutTrapping() throws {
        let deep = String(repeating: "(", count: 5_000) + "1" + String(repeating: ")", count: 5_000)
        #expect(templateError { _ = try render("{{ \(deep) }}") }?.kind == .syntax)
        #expect(templateError { _ = try render("{{ range(10000000)|length }}") }?.kind == .render)
        #expect(templateError { _ = try render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}") }?.kind == .render)
        #expect(templateError { _ = try render("{{ 9223372036854775807 + 1 }}") }?.description == "chat template error on line 1: integer overflow in '+'")
        #expect(templateError { _ = try render("{{ 'x' * 100000000 }}") }?.kind == .render)
        #expect(templateError { _ = try render("{{ 1 // 0 }}") }?.kind == .render)
        #expect(templateError { _ = try render("{{ [1][::0] }}") }?.kind == .render)
        #expect(templateError { _ = try render("{% set l = [] %}{{ l.append(1) }}") }?.description
            == "chat template error on line 1: access to attribute 'append' of 'list' object is unsafe.")
        // Content is data, never template code.
        #expect(try render("{{ text }}", ["text": "{{ 7 * 7 }} {% if %}"]) == "{{ 7 * 7 }} {% if %}")
    }

    @Test func strftimeNowUsesTheGivenClock() throws {
        let renderer = try ChatTemplateRenderer(template: "{{ strftime_now('%d %b %Y') }}")
        #expect(try renderer.render(messages: [], now: ChatTemplateParityTests.fixedNow) == "26 Jul 2024")
    }

    @Test func rendererSetsTransformersVariables() throws {
        let renderer = try ChatTemplateRenderer(template: "{{ bos_token }}{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }}{{ messages|length }}{{ enable_thinking }}")
        #expect(try renderer.render(messages: [["role": "user", "content": "x"]], addGenerationPrompt: true, specialTokens: ["bos_token": "<s>"],
                                    extra: ["enable_thinking": false]) == "<s>TrueTrueTrue1False")
        let clash = templateError { _ = try renderer.render(messages: [], extra: ["messages": []]) }
        #expect(clash?.message == "extra variable 'messages' clashes with the variable the renderer sets itself")
    }

    @Test func jsonTextKeepsKeyOrder() throws {
        let value = try ChatValue(jsonText: #"{"z": 1, "a": [true, null, 2.5, "\u00e9\n"], "m": {"y": {}, "b": []}}"#)
        guard case .object(let object) = value else {
            Issue.record("expected an object")
            return
        }
        #expect(object.keys == ["z", "a", "m"])
        #expect(object["a"] == [true, nil, 2.5, "é\n"])
        #expect(throws: DataError("invalid JSON at byte 6: expected a value")) { try ChatValue(jsonText: #"{"a": }"#) }
    }
}
