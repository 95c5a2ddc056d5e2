import Foundation

/// The byte-level BPE tokenizer (GPT-4 / Llama-3 style) loaded from a Hugging Face
/// `tokenizer.json`: pieces from `PreTokenizer`, merged by rank, special tokens after the merged
/// vocabulary. Any bytes encode (invalid UTF-8 included) and decode back exactly.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    public let model: BPEModel
    public let identity: TokenizerIdentity
    /// The canonical tokenizer.json text (`TokenizerJSON.encode`); `identity.hash` is its sha256.
    public let canonicalJSON: String
    public let longestTokenByteCount: Int
    // `@unchecked Sendable`: the encoder (and its cache) is only touched under `lock`.
    private let lock = NSLock()
    private let encoder: BPEEncoder

    /// Fails when the model has no end-of-text token (every document ends with one in shards).
    public init(model: BPEModel, name: String) throws(DataError) {
        guard let endOfText = model.endOfTextId else {
            throw DataError("\(name): the tokenizer has no end-of-text special token (one of \(BPEModel.endOfTextNames.joined(separator: ", "))); add one to added_tokens, or train with --special-tokens including <|end_of_text|>")
        }
        self.model = model
        canonicalJSON = TokenizerJSON.encode(model)
        let specials = model.specialTokens.count
        identity = TokenizerIdentity(
            name: (name as NSString).lastPathComponent,
            description: "byte-level BPE, GPT-4/Llama-3 split pattern, \(model.merges.count) merges, \(specials) special tokens",
            hash: "sha256:" + SHA256.hex(of: Array(canonicalJSON.utf8)),
            vocabSize: model.count, eosId: endOfText, bosId: model.beginOfTextId, padId: model.padId)
        encoder = BPEEncoder(model: model)
        longestTokenByteCount = model.tokens.map(\.count).max() ?? 1
    }

    /// Loads `path` (a Hugging Face tokenizer.json).
    public convenience init(contentsOf path: String) throws(DataError) {
        try self.init(model: TokenizerJSON.load(path), name: path)
    }

    /// The ids of `text`'s UTF-8 bytes; special token texts are encoded as ordinary text.
    public func encode(_ text: String) -> [Int32] {
        var text = text
        return text.withUTF8 { encode(bytes: $0) }
    }

    /// The ids of arbitrary bytes (not necessarily UTF-8).
    public func encode(bytes: UnsafeBufferPointer<UInt8>) -> [Int32] {
        var ids = [Int32]()
        ids.reserveCapacity(bytes.count / 3)
        lock.lock()
        encoder.encode(bytes, into: &ids)
        lock.unlock()
        return ids
    }

    public func encode(bytes: [UInt8]) -> [Int32] {
        bytes.withUnsafeBufferPointer { encode(bytes: $0) }
    }

    /// Like `encode`, but the texts of special tokens (e.g. `<|eot_id|>` in a chat template)
    /// become their ids.
    public func encodeWithSpecialTokens(_ text: String) -> [Int32] {
        let bytes = Array(text.utf8)
        let specials = model.specialTokens.map { (Array($0.content.utf8), $0.id) }.filter { !$0.0.isEmpty }
        var ids = [Int32]()
        var segmentStart = 0
        var position = 0
        while position < bytes.count {
            // The longest special text starting here (so "<|a|>" never hides "<|a|>b").
            var found: ([UInt8], Int32)?
            for special in specials where special.0.count <= bytes.count - position {
                if bytes[position] == special.0[0], bytes[position..<position + special.0.count].elementsEqual(special.0),
                   special.0.count > (found?.0.count ?? 0) {
                    found = special
                }
            }
            if let (content, id) = found {
                ids += encode(bytes: Array(bytes[segmentStart..<position]))
                ids.append(id)
                position += content.count
                segmentStart = position
            } else {
                position += 1
            }
        }
        ids += encode(bytes: Array(bytes[segmentStart..<bytes.count]))
        return ids
    }

    /// The bytes of `ids`. Special tokens give their text when `includeSpecialTokens`, else
    /// nothing; ids outside the vocabulary give U+FFFD.
    public func decodeBytes(_ ids: [Int32], includeSpecialTokens: Bool = false) -> [UInt8] {
        let specialIds = Set(model.specialTokens.map(\.id))
        var bytes = [UInt8]()
        for id in ids {
            guard id >= 0, Int(id) < model.tokens.count else {
                bytes += [0xEF, 0xBF, 0xBD]
                continue
            }
            if !includeSpecialTokens, specialIds.contains(id) { continue }
            bytes += model.tokens[Int(id)]
        }
        return bytes
    }

    public func decode(_ ids: [Int32]) -> String {
        String(decoding: decodeBytes(ids), as: UTF8.self)
    }
}
