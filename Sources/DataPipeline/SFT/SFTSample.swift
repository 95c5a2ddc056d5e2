import Runtime

/// One supervised fine-tuning sample as read from a user's file, before any template: a
/// conversation (system, user and assistant turns), or a plain prompt and completion joined as
/// text (TRL's "standard" prompt-completion form, which no chat template touches).
public struct SFTSample: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        case conversation([ChatTurn])
        case text(prompt: String, completion: String)
    }

    /// `file:line`, for messages about this sample.
    public let source: String
    public let content: Content

    public init(source: String, content: Content) {
        self.source = source
        self.content = content
    }
}

/// One message of a conversation.
public struct ChatTurn: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(_ role: Role, _ content: String) {
        self.role = role
        self.content = content
    }
}

/// The layouts of SFT files MeshLM reads (DESIGN §7), one JSON object per line.
///
///     alpaca             {instruction, input?, output, system?, history?: [[user, assistant], …]}
///     sharegpt           {conversations: [{from, value}, …], system?}   (tag names: `ShareGPTTags`)
///     openai             {messages: [{role, content}, …]}    (content a string or text parts)
///     prompt_completion  {prompt, completion}: strings (plain text), or message lists
///     auto               each line by its keys: messages, conversations, instruction, prompt
public enum SFTFormat: String, ConfigChoice {
    case auto, alpaca, sharegpt, openai
    case promptCompletion = "prompt_completion"
}

/// The field names and role values of ShareGPT files, which differ between datasets
/// (LlamaFactory's `tags`): by default `from`/`value` with `human`, `gpt` and `system`.
public struct ShareGPTTags: Codable, Sendable, Equatable {
    public var roleTag = "from"
    public var contentTag = "value"
    public var userTag = "human"
    public var assistantTag = "gpt"
    public var systemTag = "system"

    public init() {}

    enum CodingKeys: String, CodingKey {
        case roleTag = "role_tag", contentTag = "content_tag", userTag = "user_tag", assistantTag = "assistant_tag"
        case systemTag = "system_tag"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        roleTag = try c.decode(.roleTag, default: "from")
        contentTag = try c.decode(.contentTag, default: "value")
        userTag = try c.decode(.userTag, default: "human")
        assistantTag = try c.decode(.assistantTag, default: "gpt")
        systemTag = try c.decode(.systemTag, default: "system")
    }
}
