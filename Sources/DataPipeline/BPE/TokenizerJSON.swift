import Foundation
import Runtime

/// Hugging Face `tokenizer.json` for byte-level BPE, both ways. What MeshLM reads is exactly
/// what it implements: model `BPE` (no dropout, no byte fallback, no subword prefix/suffix), no
/// normalizer, and the pre-tokenizer `Sequence[Split(GPT-4/Llama-3 pattern, Isolated),
/// ByteLevel(use_regex: false, add_prefix_space: false)]` (or a lone ByteLevel of that kind
/// after the same Split). Anything else is refused by name rather than tokenized differently.
public enum TokenizerJSON {
    /// Reads and checks `path`.
    public static func load(_ path: String) throws(DataError) -> BPEModel {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("\(path): no such tokenizer (expected 'bytes' or the path of a tokenizer.json)")
        }
        return try parse(data, path: path)
    }

    /// Reads and checks the bytes of a tokenizer.json; `path` names it in errors.
    public static func parse(_ data: Data, path: String) throws(DataError) -> BPEModel {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw DataError("\(path): malformed JSON (not a tokenizer.json)")
        }
        guard let root = object as? [String: Any] else { throw DataError("\(path): expected a JSON object (not a tokenizer.json)") }
        return try parse(root, path: path)
    }

    static func parse(_ root: [String: Any], path: String) throws(DataError) -> BPEModel {
        guard let model = root["model"] as? [String: Any] else { throw DataError("\(path): no 'model' object (not a tokenizer.json)") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else {
            throw DataError("\(path): model type '\(type)' is not supported (MeshLM reads byte-level BPE tokenizers only)")
        }
        if let normalizer = root["normalizer"], !(normalizer is NSNull) {
            throw DataError("\(path): normalizer '\(typeName(normalizer))' is not supported (MeshLM applies no normalizer; use a tokenizer without one)")
        }
        try checkPreTokenizer(root["pre_tokenizer"], path: path)
        for key in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] {
            if let value = model[key], !(value is NSNull), !((value as? String)?.isEmpty ?? false) {
                throw DataError("\(path): model.\(key) = \(value) is not supported (MeshLM's BPE has no \(key.replacingOccurrences(of: "_", with: " ")))")
            }
        }
        if (model["byte_fallback"] as? Bool) == true {
            throw DataError("\(path): model.byte_fallback is not supported (byte-level BPE needs no fallback)")
        }
        guard let vocabulary = model["vocab"] as? [String: Any] else { throw DataError("\(path): model.vocab is missing or not an object") }

        var textOfId = [Int32: String]()
        var idOfText = [String: Int32]()
        for (text, value) in vocabulary {
            guard let number = value as? NSNumber, let id = Int32(exactly: number.doubleValue), id >= 0 else {
                throw DataError("\(path): model.vocab['\(text)'] is not a token id")
            }
            if let other = textOfId[id] { throw DataError("\(path): model.vocab gives id \(id) to both '\(other)' and '\(text)'") }
            textOfId[id] = text
            idOfText[text] = id
        }
        var specials = [BPEModel.SpecialToken]()
        for (index, entry) in ((root["added_tokens"] as? [[String: Any]]) ?? []).enumerated() {
            guard let content = entry["content"] as? String, let number = entry["id"] as? NSNumber,
                  let id = Int32(exactly: number.doubleValue), id >= 0 else {
                throw DataError("\(path): added_tokens[\(index)] needs a string 'content' and an integer 'id'")
            }
            guard entry["special"] as? Bool ?? true else {
                throw DataError("\(path): added_tokens[\(index)] '\(content)' is not special (MeshLM supports special added tokens only; ordinary words belong in model.vocab and merges)")
            }
            if let other = textOfId[id], other != content {
                throw DataError("\(path): added_tokens[\(index)] '\(content)' has id \(id), which model.vocab gives to '\(other)'")
            }
            textOfId[id] = content
            specials.append(.init(content: content, id: id))
        }
        let specialIds = Set(specials.map(\.id))
        let count = textOfId.count
        var tokens = [[UInt8]]()
        tokens.reserveCapacity(count)
        for id in 0..<Int32(count) {
            guard let text = textOfId[id] else { throw DataError("\(path): token ids are not contiguous: id \(id) is missing (there are \(count) tokens)") }
            if specialIds.contains(id) {
                tokens.append(Array(text.utf8))
            } else {
                guard let bytes = ByteLevelAlphabet.bytes(of: text) else {
                    throw DataError("\(path): model.vocab token '\(text)' (id \(id)) has a character outside the byte-level alphabet (not a byte-level BPE vocabulary)")
                }
                tokens.append(bytes)
            }
        }
        var seenBytes = Set<UInt8>()
        for (id, token) in tokens.enumerated() where token.count == 1 && !specialIds.contains(Int32(id)) { seenBytes.insert(token[0]) }
        if let missing = (0...255).first(where: { !seenBytes.contains(UInt8($0)) }) {
            throw DataError("\(path): model.vocab has no token for byte 0x\(String(missing, radix: 16, uppercase: true)) ('\(ByteLevelAlphabet.text(of: [UInt8(missing)]))'); a byte-level BPE vocabulary needs all 256 bytes")
        }
        let merges = try parseMerges(model["merges"], idOfText: idOfText, path: path)
        let ignoreMerges = model["ignore_merges"] as? Bool ?? false
        return BPEModel(tokens: tokens, merges: merges, specialTokens: specials.sorted { $0.id < $1.id }, ignoreMerges: ignoreMerges)
    }

    private static func parseMerges(_ value: Any?, idOfText: [String: Int32], path: String) throws(DataError) -> [BPEModel.Merge] {
        guard let list = value as? [Any] else { throw DataError("\(path): model.merges is missing or not an array") }
        var merges = [BPEModel.Merge]()
        merges.reserveCapacity(list.count)
        for (index, entry) in list.enumerated() {
            let pair: [String]
            if let text = entry as? String {
                pair = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let parts = entry as? [String] {
                pair = parts
            } else {
                pair = []
            }
            guard pair.count == 2 else { throw DataError("\(path): model.merges[\(index)] is not a pair of tokens") }
            guard let left = idOfText[pair[0]], let right = idOfText[pair[1]], let result = idOfText[pair[0] + pair[1]] else {
                throw DataError("\(path): model.merges[\(index)] '\(pair[0]) \(pair[1])' names a token that is not in model.vocab")
            }
            merges.append(.init(left: left, right: right, result: result))
        }
        return merges
    }

    private static func typeName(_ value: Any) -> String {
        (value as? [String: Any])?["type"] as? String ?? "\(value)"
    }

    private static func checkPreTokenizer(_ value: Any?, path: String) throws(DataError) {
        let expected = "Sequence[Split(the GPT-4/Llama-3 pattern, Isolated), ByteLevel(use_regex: false, add_prefix_space: false)]"
        func refuse(_ what: String) -> DataError {
            DataError("\(path): pre_tokenizer \(what) is not supported (MeshLM implements \(expected))")
        }
        guard let sequence = value as? [String: Any] else { throw refuse("null") }
        guard sequence["type"] as? String == "Sequence", let steps = sequence["pretokenizers"] as? [[String: Any]] else {
            throw refuse("'\(typeName(sequence))'")
        }
        guard steps.count == 2 else { throw refuse("with \(steps.count) steps") }
        let split = steps[0]
        let pattern = (split["pattern"] as? [String: Any])?["Regex"] as? String
        guard split["type"] as? String == "Split", pattern == PreTokenizer.pattern,
              split["behavior"] as? String == "Isolated", (split["invert"] as? Bool ?? false) == false else {
            throw refuse("Split with pattern \(pattern ?? "(not a regex)")")
        }
        let byteLevel = steps[1]
        guard byteLevel["type"] as? String == "ByteLevel", (byteLevel["use_regex"] as? Bool) == false,
              (byteLevel["add_prefix_space"] as? Bool ?? false) == false else {
            throw refuse("step 2 '\(typeName(byteLevel))' (needs ByteLevel with use_regex false and add_prefix_space false)")
        }
    }

    /// The canonical tokenizer.json text of `model`: fixed key order, vocabulary by id, merges
    /// by rank. Hugging Face `tokenizers` loads it. Special tokens at the end of the id range
    /// are only in `added_tokens` (as in Llama-3); others are also in `model.vocab`.
    public static func encode(_ model: BPEModel) -> String {
        let specialIds = Set(model.specialTokens.map(\.id))
        var vocabularyEnd = model.count
        while vocabularyEnd > 0, specialIds.contains(Int32(vocabularyEnd - 1)) { vocabularyEnd -= 1 }
        func tokenText(_ id: Int) -> String {
            specialIds.contains(Int32(id)) ? String(decoding: model.tokens[id], as: UTF8.self) : ByteLevelAlphabet.text(of: model.tokens[id])
        }
        var out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ["
        for (index, special) in model.specialTokens.enumerated() {
            out += index == 0 ? "\n" : ",\n"
            out += "    {\"id\": \(special.id), \"content\": \(quoted(special.content)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
        }
        out += model.specialTokens.isEmpty ? "],\n" : "\n  ],\n"
        out += "  \"normalizer\": null,\n"
        out += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \(quoted(PreTokenizer.pattern))}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n"
        out += "  \"post_processor\": null,\n"
        out += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
        out += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": \(model.ignoreMerges),\n    \"vocab\": {"
        for id in 0..<vocabularyEnd {
            out += id == 0 ? "\n      " : ",\n      "
            out += quoted(tokenText(id)) + ": " + String(id)
        }
        out += "\n    },\n    \"merges\": ["
        for (index, merge) in model.merges.enumerated() {
            out += index == 0 ? "\n      [" : ",\n      ["
            out += quoted(tokenText(Int(merge.left))) + ", " + quoted(tokenText(Int(merge.right))) + "]"
        }
        out += model.merges.isEmpty ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n"
        return out
    }

    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Writes `model` to `path` through a temporary name.
    public static func write(_ model: BPEModel, to path: String) throws(DataError) {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(encode(model).utf8)) else {
            throw DataError("\(temporary): cannot be written: \(FileProblem.reason(writing: temporary)); choose another --output")
        }
        guard rename(temporary, path) == 0 else {
            throw DataError("\(path): cannot rename \(temporary) into place: \(String(cString: strerror(errno)))")
        }
    }
}
