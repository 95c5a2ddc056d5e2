import Foundation
import DataPipeline
import Testing

@Suite struct TokenizerTests {
    @Test func byteTokenizerRoundTripsUTF8() {
        let tokenizer = ByteTokenizer()
        for text in ["", "plain ASCII", "naïve café — “quotes” ‘and’ …", "日本語のテキスト", "emoji 🧪🚀 and a ZWJ 👩‍💻", "tab\tnew\nline\u{0}nul"] {
            let ids = tokenizer.encode(text)
            #expect(ids == text.utf8.map { Int32($0) })
            #expect(ids.allSatisfy { $0 >= 0 && $0 < 256 })
            #expect(tokenizer.decode(ids) == text)
        }
        #expect(tokenizer.encode("é") == [0xC3, 0xA9])
    }

    @Test func specialAndUnknownIdsDecode() {
        let tokenizer = ByteTokenizer()
        #expect(tokenizer.vocabSize == 259)
        #expect(tokenizer.eosId == 256)
        #expect(tokenizer.identity.bosId == 257 && tokenizer.identity.padId == 258)
        // Special ids are dropped; ids a larger model vocabulary may produce become U+FFFD.
        #expect(tokenizer.decode([257, 104, 105, 256, 258]) == "hi")
        #expect(tokenizer.decode([104, 300, 105, -1]) == "h\u{FFFD}i\u{FFFD}")
        // A cut multibyte sequence decodes with a replacement character, never a crash.
        #expect(tokenizer.decode([0xE6, 0x97]) == "\u{FFFD}")
    }

    @Test func identityHashIsStable() {
        // sha256 of the definition text, as Python's hashlib computes it.
        #expect(ByteTokenizer().identity.hash == "sha256:ad68e2776d22fbf3d065d9d878b969e5406ff31e1cc35a7ceb086e020a992086")
        #expect(ByteTokenizer().identity.name == "bytes")
    }

    @Test func loaderKnowsBytesAndPaths() throws {
        #expect(try TokenizerLoader.load("bytes").identity == ByteTokenizer().identity)
        expectDataError("unknown tokenizer 'gpt2' (available: bytes, or the path of a tokenizer.json)") { _ = try TokenizerLoader.load("gpt2") }
    }

    @Test func sha256MatchesKnownDigests() {
        #expect(SHA256.hex(of: []) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let bytes = (0..<1000).map { UInt8(($0 * 7 + 3) % 256) }
        #expect(SHA256.hex(of: bytes) == "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371")
        // Fed in uneven pieces: the same digest.
        var hasher = SHA256()
        var start = 0
        for size in [1, 63, 64, 65, 7, 300, 500] {
            let end = min(start + size, bytes.count)
            hasher.update(Array(bytes[start..<end]))
            start = end
        }
        #expect(start == bytes.count)
        #expect(hasher.finalize().map { String(format: "%02x", $0) }.joined() == "1e9bc38cbf860b9ec31918b065f9b52476c549a782e0e7990bed8ce3868d2371")
    }
}
