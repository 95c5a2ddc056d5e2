import DataPipeline
import Foundation
import Testing

@Suite struct BPETokenizerTests {
    /// A tokenizer trained on the shipped eval corpus (small, a fraction of a second).
    static let trained: BPETokenizer? = {
        guard let reader = try? DocumentReader(path: join(repositoryRoot, "data/corpus/eval.jsonl.zst")) else { return nil }
        let counts = PieceCounts()
        while let document = try? reader.next() { counts.add(document: document.text) }
        guard let trainer = try? BPETrainer(options: .init(vocabularySize: 1200)) else { return nil }
        return try? BPETokenizer(model: trainer.train(counts), name: "eval-1200.json")
    }()

    @Test func roundTripsTextAndArbitraryBytes() throws {
        let tokenizer = try #require(Self.trained)
        for text in ["", "The quick brown fox's 12345 jumps.\n\n  ", "日本語 naïve 🧪👩‍💻", "<|end_of_text|> stays text", String(repeating: " ", count: 3000) + "x"] {
            let ids = tokenizer.encode(text)
            #expect(tokenizer.decode(ids) == text)
            #expect(ids == tokenizer.encode(bytes: Array(text.utf8)), "String and bytes encode alike")
            #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabSize - 6 }, "no special ids from text")
        }
        var generator = SplitMix(seed: 3)
        for _ in 0..<300 {
            let bytes = (0..<Int(generator.next() % 64)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            #expect(tokenizer.decodeBytes(tokenizer.encode(bytes: bytes)) == bytes)
        }
        let invalid: [UInt8] = [0xFF, 0xFE, 0x20, 0xC3, 0x28, 0xE2, 0x82, 0x20, 0xED, 0xA0, 0x80, 0xF4, 0x90, 0x80, 0x80, 0x0A]
        #expect(tokenizer.decodeBytes(tokenizer.encode(bytes: invalid)) == invalid)
    }

    /// `longestTokenByteCount` is the longest token's bytes (special texts included), so no
    /// text encodes to fewer than its bytes / that many ids: what `serve` refuses prompts by.
    @Test func noTextHasFewerTokensThanItsBytesOverTheLongestToken() throws {
        let tokenizer = try #require(Self.trained)
        #expect(tokenizer.longestTokenByteCount == tokenizer.model.tokens.map(\.count).max())
        #expect(tokenizer.longestTokenByteCount > 1)
        let longest = try #require(tokenizer.model.tokens.max { $0.count < $1.count })
        var texts = [String(decoding: longest, as: UTF8.self), String(repeating: " ", count: 3000), "the the the the",
                     "<|end_of_text|><|eot_id|>", String(repeating: "<|start_header_id|>", count: 40)]
        texts += tokenizer.model.tokens.map { String(decoding: $0, as: UTF8.self) }
        for text in texts {
            for ids in [tokenizer.encode(text), tokenizer.encodeWithSpecialTokens(text)] {
                #expect(ids.count * tokenizer.longestTokenByteCount >= text.utf8.count, "\(text.prefix(40))")
            }
        }
    }

    @Test func heapMergeOfLongPiecesEqualsRescanning() throws {
        let model = try #require(Self.trained).model
        let heap = BPEEncoder(model: model, heapMergeLength: 2)
        let scan = BPEEncoder(model: model, heapMergeLength: .max)
        var generator = SplitMix(seed: 9)
        let words = ["the", "ing", "tion", "aaa", "ab", "select", "from", "where", "e", "s", "9", "é"]
        var texts = [String(repeating: "a", count: 5000), String(repeating: "ab", count: 700)]
        for _ in 0..<200 {
            texts.append((0..<Int(generator.next() % 60)).map { _ in words[Int(generator.next() % UInt64(words.count))] }.joined())
        }
        for text in texts {
            var fromHeap = [Int32](), fromScan = [Int32]()
            Array(text.utf8).withUnsafeBufferPointer { heap.encode($0, into: &fromHeap); scan.encode($0, into: &fromScan) }
            #expect(fromHeap == fromScan, "\(text.prefix(60))")
            if fromHeap != fromScan { return }
        }
    }

    @Test func mergesCompressAndCacheDoesNotChangeIds() throws {
        let tokenizer = try #require(Self.trained)
        let text = "The tokenizer merges frequent pairs: the the the."
        let first = tokenizer.encode(text)
        #expect(first.count < text.utf8.count / 2)
        #expect(tokenizer.encode(text) == first)
    }

    @Test func specialTokensAndIdentity() throws {
        let tokenizer = try #require(Self.trained)
        #expect(tokenizer.vocabSize == 1200)
        #expect(tokenizer.eosId == 1195 && tokenizer.identity.bosId == 1194 && tokenizer.identity.padId == 1196)
        let chat = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        let ids = tokenizer.encodeWithSpecialTokens(chat)
        #expect(Array(ids.prefix(2)) == [1194, 1197])
        #expect(ids.last == 1199)
        #expect(String(decoding: tokenizer.decodeBytes(ids, includeSpecialTokens: true), as: UTF8.self) == chat)
        #expect(tokenizer.decode(ids) == "user\n\nHi")
        #expect(tokenizer.decode([72, 5000, -1]) == "H\u{FFFD}\u{FFFD}")
        #expect(tokenizer.identity.hash == "sha256:" + SHA256.hex(of: Array(tokenizer.canonicalJSON.utf8)))
    }

    @Test func tokenizerJSONRoundTripsAndLoads() throws {
        let tokenizer = try #require(Self.trained)
        let directory = scratchDirectory()
        let path = join(directory, "tokenizer.json")
        try TokenizerJSON.write(tokenizer.model, to: path)
        let loaded = try TokenizerLoader.load(path)
        #expect(loaded.identity.hash == tokenizer.identity.hash)
        #expect(loaded.identity.name == "tokenizer.json")
        let text = "Loaded tokenizers give the same ids: ünïcödé 2024!"
        #expect(loaded.encode(text) == tokenizer.encode(text))
        // Merges written as "a b" strings (older files) load the same.
        var json = try String(contentsOfFile: path, encoding: .utf8)
        json = json.replacingOccurrences(of: #"\["([^"]+)", "([^"]+)"\]"#, with: #""$1 $2""#, options: .regularExpression)
        try write(json, to: join(directory, "old.json"))
        #expect(try BPETokenizer(contentsOf: join(directory, "old.json")).encode(text) == tokenizer.encode(text))
    }

    @Test func badTokenizerFilesAreRefusedByName() throws {
        let tokenizer = try #require(Self.trained)
        let directory = scratchDirectory()
        let good = TokenizerJSON.encode(tokenizer.model)
        func variant(_ name: String, _ text: String) throws -> String {
            let path = join(directory, name)
            try write(text, to: path)
            return path
        }
        let missing = join(directory, "missing.json")
        expectDataError("\(missing): no such tokenizer (expected 'bytes' or the path of a tokenizer.json)") { _ = try TokenizerLoader.load(missing) }
        let malformed = try variant("malformed.json", "{\"model\": ")
        expectDataError("\(malformed): malformed JSON (not a tokenizer.json)") { _ = try TokenizerLoader.load(malformed) }
        let wordPiece = try variant("wordpiece.json", good.replacingOccurrences(of: "\"type\": \"BPE\"", with: "\"type\": \"WordPiece\""))
        expectDataError("\(wordPiece): model type 'WordPiece' is not supported (MeshLM reads byte-level BPE tokenizers only)") { _ = try TokenizerLoader.load(wordPiece) }
        let normalized = try variant("nfc.json", good.replacingOccurrences(of: "\"normalizer\": null", with: "\"normalizer\": {\"type\": \"NFC\"}"))
        expectDataError("\(normalized): normalizer 'NFC' is not supported (MeshLM applies no normalizer; use a tokenizer without one)") { _ = try TokenizerLoader.load(normalized) }
        let gpt2 = try variant("gpt2.json", good.replacingOccurrences(of: #""pre_tokenizer": {"type": "Sequence""#, with: #""pre_tokenizer": {"type": "ByteLevel", "x": {"type": "Sequence""#)
            .replacingOccurrences(of: #""use_regex": false}]},"#, with: #""use_regex": false}]}},"#))
        expectDataError("\(gpt2): pre_tokenizer 'ByteLevel' is not supported (MeshLM implements Sequence[Split(the GPT-4/Llama-3 pattern, Isolated), ByteLevel(use_regex: false, add_prefix_space: false)])") { _ = try TokenizerLoader.load(gpt2) }
        let fallback = try variant("fallback.json", good.replacingOccurrences(of: "\"byte_fallback\": false", with: "\"byte_fallback\": true"))
        expectDataError("\(fallback): model.byte_fallback is not supported (byte-level BPE needs no fallback)") { _ = try TokenizerLoader.load(fallback) }
        let noEOS = try variant("noeos.json", good.replacingOccurrences(of: "<|end_of_text|>", with: "<|the_end|>"))
        expectDataError("\(noEOS): the tokenizer has no end-of-text special token (one of <|end_of_text|>, <|endoftext|>, </s>); add one to added_tokens, or train with --special-tokens including <|end_of_text|>") { _ = try TokenizerLoader.load(noEOS) }
        let badMerge = try variant("badmerge.json", good.replacingOccurrences(of: "\"merges\": [\n      [", with: "\"merges\": [\n      [\"zz\", \"q\"], ["))
        expectDataError("\(badMerge): model.merges[0] 'zz q' names a token that is not in model.vocab") { _ = try TokenizerLoader.load(badMerge) }
        let plainAdded = try variant("added.json", good.replacingOccurrences(of: "\"content\": \"<|pad|>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true",
                                                                          with: "\"content\": \"<|pad|>\", \"special\": false"))
        expectDataError("\(plainAdded): added_tokens[2] '<|pad|>' is not special (MeshLM supports special added tokens only; ordinary words belong in model.vocab and merges)") { _ = try TokenizerLoader.load(plainAdded) }
        let noByte = try variant("nobyte.json", good.replacingOccurrences(of: "\"!\": 33,", with: ""))
        expectDataError("\(noByte): token ids are not contiguous: id 33 is missing (there are 1199 tokens)") { _ = try TokenizerLoader.load(noByte) }
    }
}
