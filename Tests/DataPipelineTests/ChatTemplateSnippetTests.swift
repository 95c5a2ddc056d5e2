import DataPipeline
import Foundation
import Testing

/// One engine feature per snippet (whitespace control, scoping, filters, tests, operators,
/// errors), each rendered by Python jinja2 in transformers' configuration; the Swift engine must
/// give the same text, or the same error (same message for raised and runtime errors, same line
/// for syntax errors, whose wording is our own).
@Suite struct ChatTemplateSnippetTests {
    @Test func everySnippetMatchesJinja2() throws {
        let directory = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            .appendingPathComponent("chat_templates")
        let text = try String(contentsOf: directory.appendingPathComponent("chat_template_snippets.json"), encoding: .utf8)
        guard case .object(let root) = try ChatValue(jsonText: text), case .array(let snippets)? = root["snippets"] else {
            Issue.record("chat_template_snippets.json has no snippets")
            return
        }
        #expect(snippets.count >= 80)
        for snippet in snippets {
            guard case .object(let fields) = snippet, let name = fields["name"]?.stringValue,
                  let source = fields["template"]?.stringValue, case .object(let variableObject)? = fields["variables"] else {
                Issue.record("malformed snippet \(snippet)")
                continue
            }
            var variables: [String: ChatValue] = [:]
            for (key, value) in variableObject.entries { variables[key] = value }
            var expectedError: ChatObject?
            if case .object(let error)? = fields["error"] { expectedError = error }
            do {
                let rendered = try ChatTemplateRenderer(template: source).render(variables: variables, now: ChatTemplateParityTests.fixedNow)
                #expect(fields["expected"]?.stringValue == rendered, "\(name)")
                if let expectedError { Issue.record("\(name): expected \(expectedError), rendered \(rendered.debugDescription)") }
            } catch let error as ChatTemplateError {
                guard let expectedError else {
                    Issue.record("\(name): unexpected error \(error)")
                    continue
                }
                switch error.kind {
                case .syntax:
                    #expect(expectedError["kind"] == "syntax", "\(name): \(error)")
                    #expect(expectedError["line"] == .integer(error.line ?? 0), "\(name): \(error)")
                case .render:
                    #expect(expectedError["kind"] == "render", "\(name): \(error)")
                    #expect(expectedError["message"]?.stringValue == error.message, "\(name)")
                case .raised:
                    #expect(expectedError["kind"] == "raised", "\(name): \(error)")
                    #expect(expectedError["message"]?.stringValue == error.message, "\(name)")
                }
            }
        }
    }
}
