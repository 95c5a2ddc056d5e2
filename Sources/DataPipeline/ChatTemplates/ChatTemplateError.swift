/// A chat template that cannot be parsed, that fails while rendering, or that refused the
/// conversation through `raise_exception(message)`.
///
/// Chat templates get their own error (rather than `DataError`) because callers must tell the
/// cases apart: a `raised` error is the template rejecting the user's messages ("Conversation
/// roles must alternate user/assistant/…"), which a server answers with 400 and the message
/// verbatim; `syntax` and `render` errors mean the template itself, or the data shape it was
/// given, is broken.
public struct ChatTemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The template text is not valid Jinja (or uses a feature this engine lacks).
        case syntax
        /// Rendering failed: undefined value used in arithmetic, a type mismatch, and so on.
        case render
        /// The template called `raise_exception(message)`.
        case raised
    }

    public let kind: Kind
    /// For `raised`, exactly the template's message; otherwise what went wrong.
    public let message: String
    /// The 1-based template line, when known.
    public let line: Int?

    public init(_ kind: Kind, _ message: String, line: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
    }

    public var description: String {
        switch kind {
        case .raised: return message
        case .syntax: return "chat template syntax error" + (line.map { " on line \($0)" } ?? "") + ": " + message
        case .render: return "chat template error" + (line.map { " on line \($0)" } ?? "") + ": " + message
        }
    }

    /// The same error with `line` filled in if it was not known yet.
    func located(at line: Int) -> ChatTemplateError {
        self.line == nil ? ChatTemplateError(kind, message, line: line) : self
    }

    /// Using an undefined value; `reason` is the undefined value's own text, in jinja2's
    /// wording ("'tools' is undefined", "'dict object' has no attribute 'content'").
    static func undefined(_ reason: String) -> ChatTemplateError {
        ChatTemplateError(.render, reason)
    }
}
