import Foundation

/// The Hugging Face `tokenizers` definition of MeshLM's byte tokenizer (`bytes`,
/// Sources/DataPipeline/ByteTokenizer.swift): a byte-level BPE with no merges whose vocabulary
/// maps byte b to id b, plus EOS 256, BOS 257 and PAD 258 as special added tokens, so HF
/// encodes any text to the ids MeshLM trained on (tools/check-hf-roundtrip.py checks it).
public enum HuggingFaceTokenizer {
    public static let eosToken = "<|eos|>"
    public static let bosToken = "<|bos|>"
    public static let padToken = "<|pad|>"

    /// GPT-2's printable stand-in for every byte, which byte-level BPE vocabularies are keyed by.
    static func byteCharacters() -> [Character] {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var characters = printable
        var next = 0
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            characters.append(256 + next)
            next += 1
        }
        var byByte = [Character](repeating: " ", count: 256)
        for (byte, scalar) in zip(printable, characters) {
            // Every value here is below 0x180, a valid scalar.
            byByte[byte] = Character(Unicode.Scalar(UInt16(scalar)).map { $0 } ?? " ")
        }
        return byByte
    }

    /// `tokenizer.json` of the byte tokenizer.
    public static func byteTokenizerJSON() throws -> Data {
        var vocabulary: [String: Int] = [:]
        for (byte, character) in byteCharacters().enumerated() { vocabulary[String(character)] = byte }
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false]
        func special(_ id: Int, _ content: String) -> [String: Any] {
            ["id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true]
        }
        let object: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(),
            "added_tokens": [special(256, eosToken), special(257, bosToken), special(258, padToken)],
            "normalizer": NSNull(), "pre_tokenizer": byteLevel, "post_processor": NSNull(), "decoder": byteLevel,
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocabulary, "merges": [String]()] as [String: Any],
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// Whether `data` is the byte tokenizer's `tokenizer.json` as `byteTokenizerJSON` writes it
    /// (compared as JSON, so key order and spacing do not matter): `ckpt import-hf` then records
    /// the byte tokenizer instead of copying a file MeshLM's BPE loader does not read.
    public static func isByteTokenizerJSON(_ data: Data) -> Bool {
        guard let given = try? JSONSerialization.jsonObject(with: data) as? NSDictionary,
              let own = try? JSONSerialization.jsonObject(with: byteTokenizerJSON()) as? NSDictionary else { return false }
        return given == own
    }

    /// `tokenizer_config.json` for the byte tokenizer (transformers' fast tokenizer wrapper).
    public static func byteTokenizerConfigJSON(maxLength: Int) throws -> Data {
        let object: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bosToken, "eos_token": eosToken, "pad_token": padToken,
            "model_max_length": maxLength, "clean_up_tokenization_spaces": false, "add_bos_token": false, "add_eos_token": false,
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
