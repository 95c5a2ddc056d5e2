import Foundation

/// The chat templates and special tokens of a Hugging Face tokenizer directory, found where
/// transformers looks for them.
///
/// Loader rules, in transformers' order:
/// 1. `chat_template.jinja` is the default template (newer transformers saves it there, and it
///    wins over `tokenizer_config.json`); `additional_chat_templates/NAME.jinja` add named ones.
/// 2. Otherwise `tokenizer_config.json`'s `chat_template`: a string (the default template) or a
///    list of `{"name": …, "template": …}`.
/// 3. Otherwise `chat_template.json`'s `chat_template` (the processor format).
/// Special tokens (`bos_token`, `eos_token`, …) come from `special_tokens_map.json`, then
/// `tokenizer_config.json` (which wins); a token may be a string or `{"content": …}`.
public struct TokenizerChatTemplates: Sendable {
    /// Template text by name; a template given without a name is "default".
    public let templates: [String: String]
    /// `bos_token`, `eos_token`, … as the tokenizer declares them (unset tokens are absent, and
    /// templates then see them as undefined, as in transformers).
    public let specialTokens: [String: String]
    public let directory: String

    static let specialTokenNames = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]

    public init(templates: [String: String], specialTokens: [String: String], directory: String) {
        self.templates = templates
        self.specialTokens = specialTokens
        self.directory = directory
    }

    /// Reads the templates and special tokens of `directory`; a directory without any template
    /// is an error.
    public static func load(directory: String) throws -> TokenizerChatTemplates {
        guard let found = try find(directory: directory) else {
            throw DataError("\(directory): no chat template (looked for chat_template.jinja, the chat_template key of tokenizer_config.json, and chat_template.json)")
        }
        return found
    }

    /// Reads the templates and special tokens of `directory`: nil when it has no template (a base
    /// model's tokenizer), an error when one is there but unreadable.
    public static func find(directory: String) throws -> TokenizerChatTemplates? {
        let configPath = directory + "/tokenizer_config.json"
        let config = try readJSONObject(configPath)
        var specialTokens: [String: String] = [:]
        for source in [try readJSONObject(directory + "/special_tokens_map.json"), config] {
            for name in specialTokenNames {
                switch source?[name] {
                case .string(let token)?: specialTokens[name] = token
                case .object(let added)?: if let token = added["content"]?.stringValue { specialTokens[name] = token }
                default: break
                }
            }
        }

        var templates: [String: String] = [:]
        if let text = try readText(directory + "/chat_template.jinja") {
            templates["default"] = text
            let additional = directory + "/additional_chat_templates"
            for file in (try? FileManager.default.contentsOfDirectory(atPath: additional)) ?? [] where file.hasSuffix(".jinja") {
                templates[String(file.dropLast(".jinja".count))] = try readText(additional + "/" + file)
            }
        } else if let declared = config?["chat_template"] {
            templates = try parseDeclaredTemplates(declared, file: configPath)
        } else if let processor = try readJSONObject(directory + "/chat_template.json"), let declared = processor["chat_template"] {
            templates = try parseDeclaredTemplates(declared, file: directory + "/chat_template.json")
        }
        guard !templates.isEmpty else { return nil }
        return TokenizerChatTemplates(templates: templates, specialTokens: specialTokens, directory: directory)
    }

    /// The template transformers would pick: the one named `name`; without a name, "tool_use"
    /// when the request has tools and the tokenizer has one, else "default".
    public func template(named name: String? = nil, hasTools: Bool = false) throws -> String {
        let available = templates.keys.sorted().joined(separator: ", ")
        if let name {
            guard let template = templates[name] else {
                throw DataError("\(directory): no chat template named '\(name)' (available: \(available))")
            }
            return template
        }
        if hasTools, let toolUse = templates["tool_use"] { return toolUse }
        guard let template = templates["default"] else {
            throw DataError("\(directory): several chat templates and none named 'default'; choose one of: \(available)")
        }
        return template
    }

    /// A renderer for `template(named:hasTools:)`.
    public func renderer(named name: String? = nil, hasTools: Bool = false) throws -> ChatTemplateRenderer {
        try ChatTemplateRenderer(template: try template(named: name, hasTools: hasTools))
    }

    private static func parseDeclaredTemplates(_ declared: ChatValue, file: String) throws -> [String: String] {
        switch declared {
        case .string(let text): return ["default": text]
        case .null: return [:]
        case .array(let entries):
            var templates: [String: String] = [:]
            for entry in entries {
                guard case .object(let fields) = entry, let name = fields["name"]?.stringValue,
                      let template = fields["template"]?.stringValue else {
                    throw DataError("\(file): chat_template list entries must be {\"name\": string, \"template\": string}")
                }
                templates[name] = template
            }
            return templates
        default:
            throw DataError("\(file): chat_template must be a string or a list of {name, template}")
        }
    }

    private static func readText(_ path: String) throws -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let text = String(data: data, encoding: .utf8) else { throw DataError("\(path): not UTF-8 text") }
        return text
    }

    private static func readJSONObject(_ path: String) throws -> ChatObject? {
        guard let text = try readText(path) else { return nil }
        let value: ChatValue
        do {
            value = try ChatValue(jsonText: text)
        } catch let error as DataError {
            throw DataError("\(path): \(error.description)")
        }
        guard case .object(let object) = value else { throw DataError("\(path): expected a JSON object") }
        return object
    }
}
