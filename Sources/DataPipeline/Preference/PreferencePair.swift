import Runtime

/// One preference pair as read from a user's file, before any template: the prompt with the
/// chosen completion and the same prompt with the rejected one, each a whole sample (a
/// conversation whose last turn is the assistant's answer, or a plain-text prompt and
/// completion), so `SFTTokenization` renders and masks both as it does an SFT sample.
public struct PreferencePair: Sendable, Equatable {
    /// `file:line`, for messages about this pair.
    public let source: String
    public let chosen: SFTSample.Content
    public let rejected: SFTSample.Content
    /// How much better chosen is than rejected, when the file says (`margin`).
    public let margin: Double?

    public init(source: String, chosen: SFTSample.Content, rejected: SFTSample.Content, margin: Double? = nil) {
        self.source = source
        self.chosen = chosen
        self.rejected = rejected
        self.margin = margin
    }
}

/// One KTO sample: a prompt and completion as one whole sample, and whether the completion is
/// desirable (`label: true`) or undesirable.
public struct UnpairedSample: Sendable, Equatable {
    /// `file:line`, for messages about this sample.
    public let source: String
    public let content: SFTSample.Content
    public let desirable: Bool

    public init(source: String, content: SFTSample.Content, desirable: Bool) {
        self.source = source
        self.content = content
        self.desirable = desirable
    }
}

/// The layouts of preference files MeshLM reads (DESIGN §7), one JSON object per line.
///
///     explicit_prompt  {prompt, chosen, rejected, margin?}: all strings (plain text), or all
///                      message lists (prompt ending with the user; chosen and rejected one
///                      assistant message each)                                      (TRL)
///     implicit_prompt  {chosen, rejected, margin?}: two whole conversations; the prompt is
///                      their common start, which ends with the user                 (TRL)
///     alpaca           {instruction, input?, system?, history?, chosen, rejected}  (LlamaFactory)
///     sharegpt         {conversations, chosen: {from, value}, rejected: {from, value}, system?}
///                      (LlamaFactory; tag names: `ShareGPTTags`)
///     auto             each line by its keys: conversations, instruction, prompt, chosen
public enum PreferenceFormat: String, ConfigChoice {
    case auto, alpaca, sharegpt
    case explicitPrompt = "explicit_prompt"
    case implicitPrompt = "implicit_prompt"
}
