/// Why a model could not be loaded or a request could not be served. The message names the file,
/// key or request field and what to change.
public struct ServingError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A checkpoint or model config could not be found or read.
        case checkpoint
        /// A request field is out of range (negative max_tokens, unknown stop token…).
        case invalidRequest
        /// The prompt plus max_tokens does not fit the context or the KV cache.
        case promptTooLong
        /// The engine's queue is full, or the server is draining.
        case overloaded
        /// A request names a model this server does not serve.
        case modelNotFound
        /// The engine has sequences in flight and cannot do what was asked (replace its weights).
        case engineBusy
        /// A request body is larger than the server reads (HTTP 413).
        case bodyTooLarge
    }

    public let kind: Kind
    public let description: String
    /// The request field at fault, for OpenAI-style errors (`param`).
    public let parameter: String?

    public init(_ kind: Kind, _ description: String, parameter: String? = nil) {
        self.kind = kind
        self.description = description
        self.parameter = parameter
    }
}
