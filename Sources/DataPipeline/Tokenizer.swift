import Foundation

/// Text to token ids and back. `ByteTokenizer` is the stopgap; the BPE tokenizer of the data
/// pipeline plugs in here, and shards record `identity` so a model never trains on ids from
/// another vocabulary unnoticed.
public protocol Tokenizer: Sendable {
    /// What goes into a shard manifest: name, description, hash, vocabulary and special ids.
    var identity: TokenizerIdentity { get }
    /// Ids run 0..<vocabSize. A model's `vocab_size` may be larger (the extra rows go unused).
    var vocabSize: Int { get }
    /// The id written after every document in token shards.
    var eosId: Int32 { get }
    /// The ids of `text`, without special tokens (the shard writer adds EOS after each document).
    func encode(_ text: String) -> [Int32]
    /// Like `encode`, but the texts of special tokens become their ids, as Hugging Face
    /// tokenizers read a rendered chat template (`<|im_end|>` → its id).
    func encodeWithSpecialTokens(_ text: String) -> [Int32]
    /// The text of `ids`. Special ids are dropped; ids outside the vocabulary (a model with a
    /// larger `vocab_size` may sample one) become U+FFFD.
    func decode(_ ids: [Int32]) -> String
    /// The most bytes of text one id stands for (a special token's text included), so a text of
    /// B bytes encodes to at least B / this many ids: a server can refuse a text too long for
    /// its context before encoding it.
    var longestTokenByteCount: Int { get }
}

extension Tokenizer {
    /// A tokenizer without special-token texts encodes them as ordinary text.
    public func encodeWithSpecialTokens(_ text: String) -> [Int32] { encode(text) }
    public var vocabSize: Int { identity.vocabSize }
    public var eosId: Int32 { identity.eosId }
}

/// A tokenizer's identity as recorded in `manifest.json`.
public struct TokenizerIdentity: Codable, Equatable, Sendable {
    /// Short name: `bytes`, or the BPE tokenizer's file name.
    public var name: String
    /// One line a person reads.
    public var description: String
    /// `sha256:` and the hex digest of the tokenizer's canonical definition: equal hashes mean
    /// equal ids for equal text.
    public var hash: String
    public var vocabSize: Int
    public var eosId: Int32
    public var bosId: Int32?
    public var padId: Int32?

    public init(name: String, description: String, hash: String, vocabSize: Int, eosId: Int32,
                bosId: Int32? = nil, padId: Int32? = nil) {
        self.name = name
        self.description = description
        self.hash = hash
        self.vocabSize = vocabSize
        self.eosId = eosId
        self.bosId = bosId
        self.padId = padId
    }

    enum CodingKeys: String, CodingKey {
        case name, description, hash
        case vocabSize = "vocab_size"
        case eosId = "eos_id"
        case bosId = "bos_id"
        case padId = "pad_id"
    }
}

/// Finds a tokenizer by the name a command line gives.
public enum TokenizerLoader {
    /// The tokenizers `load` knows by name (any path of a tokenizer.json works too).
    public static let names = ["bytes"]

    /// `bytes` is `ByteTokenizer`; a path ending in `.json`, or naming a file, is a Hugging Face
    /// byte-level BPE `tokenizer.json` (`BPETokenizer`).
    public static func load(_ name: String) throws(DataError) -> any Tokenizer {
        switch name {
        case "bytes": return ByteTokenizer()
        default:
            if name.hasSuffix(".json") || FileManager.default.fileExists(atPath: name) {
                return try BPETokenizer(contentsOf: name)
            }
            throw DataError("unknown tokenizer '\(name)' (available: \(names.joined(separator: ", ")), or the path of a tokenizer.json)")
        }
    }
}
