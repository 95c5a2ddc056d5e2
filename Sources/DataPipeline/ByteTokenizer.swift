/// The stopgap tokenizer until BPE: a text's UTF-8 bytes are its ids 0...255, followed by three
/// special ids. Vocabulary 259, so it fits any model with `vocab_size` ≥ 259.
///
///     ids 0...255   the bytes of the UTF-8 encoding
///     256           EOS, written after every document in token shards
///     257           BOS (not written by the shard writer; for chat formats later)
///     258           PAD
public struct ByteTokenizer: Tokenizer {
    public static let eos: Int32 = 256
    public static let bos: Int32 = 257
    public static let pad: Int32 = 258
    public static let size = 259

    /// The definition the hash is taken of: a change to the ids must change this text.
    static let definition = "meshlm byte tokenizer v1: ids 0-255 are the UTF-8 bytes of the text; eos 256, bos 257, pad 258; vocabulary 259"

    public let identity: TokenizerIdentity
    /// Every id is one byte (the special ids are never encoded from text).
    public var longestTokenByteCount: Int { 1 }

    public init() {
        identity = TokenizerIdentity(
            name: "bytes", description: "UTF-8 bytes as ids 0-255; eos 256, bos 257, pad 258",
            hash: "sha256:" + SHA256.hex(of: Array(Self.definition.utf8)),
            vocabSize: Self.size, eosId: Self.eos, bosId: Self.bos, padId: Self.pad)
    }

    public func encode(_ text: String) -> [Int32] {
        var ids = [Int32]()
        ids.reserveCapacity(text.utf8.count)
        for byte in text.utf8 { ids.append(Int32(byte)) }
        return ids
    }

    public func decode(_ ids: [Int32]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(ids.count)
        for id in ids {
            switch id {
            case 0...255: bytes.append(UInt8(id))
            case Self.eos, Self.bos, Self.pad: continue
            default: bytes.append(contentsOf: [0xEF, 0xBF, 0xBD])  // U+FFFD
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
