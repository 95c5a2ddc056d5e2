import DataPipeline
import Foundation
import Testing

/// Real chat templates rendered in Swift must match Python jinja2 (configured as transformers
/// configures it) byte for byte. Expected outputs come from
/// tools/golden/make_chat_template_fixture.py; see Fixtures/chat_templates/README.md.
@Suite struct ChatTemplateParityTests {
    struct Case {
        var template: String
        var conversation: String
        var addGenerationPrompt: Bool
        var expected: String?
        var errorKind: String?
        var errorMessage: String?
    }

    struct Fixture {
        var directory: URL
        var cases: [Case]
        var conversations: ChatObject
        var specialTokens: ChatObject
    }

    static func loadFixture() throws -> Fixture {
        let directory = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("chat_templates")
        let text = try String(contentsOf: directory.appendingPathComponent("chat_template_cases.json"), encoding: .utf8)
        guard case .object(let root) = try ChatValue(jsonText: text),
              case .array(let rawCases)? = root["cases"],
              case .object(let conversations)? = root["conversations"],
              case .object(let specialTokens)? = root["special_tokens"] else {
            throw DataError("chat_template_cases.json lacks cases, conversations or special_tokens")
        }
        var cases: [Case] = []
        for rawCase in rawCases {
            guard case .object(let fields) = rawCase,
                  let template = fields["template"]?.stringValue,
                  let conversation = fields["conversation"]?.stringValue,
                  case .bool(let addGenerationPrompt)? = fields["add_generation_prompt"] else {
                throw DataError("malformed case \(rawCase)")
            }
            var parsed = Case(template: template, conversation: conversation, addGenerationPrompt: addGenerationPrompt)
            parsed.expected = fields["expected"]?.stringValue
            if case .object(let error)? = fields["error"] {
                parsed.errorKind = error["kind"]?.stringValue
                parsed.errorMessage = error["message"]?.stringValue
            }
            cases.append(parsed)
        }
        return Fixture(directory: directory, cases: cases, conversations: conversations, specialTokens: specialTokens)
    }

    /// 2024-07-26 09:05:03 local time, the clock the fixture generator gives `strftime_now`.
    static let fixedNow: Date = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .current
        return calendar.date(from: DateComponents(year: 2024, month: 7, day: 26, hour: 9, minute: 5, second: 3)) ?? Date()
    }()

    @Test func everyTemplateMatchesJinja2() throws {
        let fixture = try Self.loadFixture()
        #expect(fixture.cases.count >= 200)
        var renderers: [String: ChatTemplateRenderer] = [:]
        var templatesSeen = Set<String>()
        for testCase in fixture.cases {
            let label = "\(testCase.template) / \(testCase.conversation) / add_generation_prompt=\(testCase.addGenerationPrompt)"
            if renderers[testCase.template] == nil {
                let source = try String(contentsOf: fixture.directory.appendingPathComponent(testCase.template + ".jinja"), encoding: .utf8)
                renderers[testCase.template] = try ChatTemplateRenderer(template: source)
            }
            let renderer = try #require(renderers[testCase.template])
            templatesSeen.insert(testCase.template)

            guard case .object(let conversation)? = fixture.conversations[testCase.conversation],
                  case .array(let messages)? = conversation["messages"] else {
                Issue.record("no conversation \(testCase.conversation)")
                continue
            }
            var tools: [ChatValue]?
            if case .array(let list)? = conversation["tools"] { tools = list }
            var extra: [String: ChatValue] = [:]
            if case .object(let object)? = conversation["extra"] {
                for (key, value) in object.entries { extra[key] = value }
            }
            var specialTokens: [String: String] = [:]
            if case .object(let tokens)? = fixture.specialTokens[testCase.template] {
                for (key, value) in tokens.entries { specialTokens[key] = value.stringValue }
            }

            do {
                let rendered = try renderer.render(messages: messages, addGenerationPrompt: testCase.addGenerationPrompt,
                                                   specialTokens: specialTokens, tools: tools, extra: extra, now: Self.fixedNow)
                #expect(testCase.expected == rendered, "\(label)")
            } catch let error as ChatTemplateError {
                let kind: String
                switch error.kind {
                case .raised: kind = "raised"
                case .render: kind = "render"
                case .syntax: kind = "syntax"
                }
                #expect(testCase.errorKind == kind, "\(label): \(error)")
                #expect(testCase.errorMessage == error.message, "\(label)")
            }
        }
        #expect(templatesSeen.count == 13)
    }
}
