/// A byte-level BPE vocabulary: what a tokenizer.json holds, checked and indexed.
///
/// Ids 0..<count are the `tokens` (bytes each); merges are in rank order (lower rank merges
/// first) and each names two token ids whose concatenation is itself a token. Special tokens are
/// tokens too; their bytes are their text, and they are never produced by merging.
public struct BPEModel: Sendable, Equatable {
    public struct SpecialToken: Sendable, Equatable {
        public var content: String
        public var id: Int32

        public init(content: String, id: Int32) {
            self.content = content
            self.id = id
        }
    }

    public struct Merge: Sendable, Equatable {
        public var left: Int32
        public var right: Int32
        /// The token the pair becomes.
        public var result: Int32

        public init(left: Int32, right: Int32, result: Int32) {
            self.left = left
            self.right = right
            self.result = result
        }
    }

    /// The bytes of every id.
    public var tokens: [[UInt8]]
    public var merges: [Merge]
    public var specialTokens: [SpecialToken]
    /// Hugging Face's `ignore_merges`: a piece that is a token as a whole becomes that token
    /// without merging (Llama-3 sets it).
    public var ignoreMerges: Bool

    /// The special token names MeshLM trains with by default (Llama-3's): begin and end of
    /// text, padding, and the chat header and turn markers. Role names (`system`, `user`,
    /// `assistant`) stay ordinary text between the header markers.
    public static let defaultSpecialTokens = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>",
                                              "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    /// Names accepted as end-of-text (written after every document), begin-of-text and padding.
    static let endOfTextNames = ["<|end_of_text|>", "<|endoftext|>", "</s>"]
    static let beginOfTextNames = ["<|begin_of_text|>", "<|startoftext|>", "<s>"]
    static let padNames = ["<|pad|>", "<pad>", "<|finetune_right_pad_id|>"]

    public init(tokens: [[UInt8]], merges: [Merge], specialTokens: [SpecialToken], ignoreMerges: Bool = false) {
        self.tokens = tokens
        self.merges = merges
        self.specialTokens = specialTokens
        self.ignoreMerges = ignoreMerges
    }

    public var count: Int { tokens.count }

    func specialId(_ names: [String]) -> Int32? {
        for name in names {
            if let token = specialTokens.first(where: { $0.content == name }) { return token.id }
        }
        return nil
    }

    public var endOfTextId: Int32? { specialId(Self.endOfTextNames) }
    public var beginOfTextId: Int32? { specialId(Self.beginOfTextNames) }
    public var padId: Int32? { specialId(Self.padNames) }
}
