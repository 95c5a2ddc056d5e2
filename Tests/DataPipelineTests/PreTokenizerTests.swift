import DataPipeline
import Foundation
import Testing

/// The scanner against ICU (`NSRegularExpression`) running the same pattern: identical pieces.
@Suite struct PreTokenizerTests {
    static let regex: NSRegularExpression? = try? NSRegularExpression(pattern: PreTokenizer.pattern)

    static func regexPieces(_ text: String) -> [String] {
        guard let regex else { return [] }
        let string = text as NSString
        return regex.matches(in: text, range: NSRange(location: 0, length: string.length)).map { string.substring(with: $0.range) }
    }

    static func scannerPieces(_ text: String) -> [String] {
        PreTokenizer().pieces(Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func patternCompiles() { #expect(Self.regex != nil) }

    @Test func handPickedCases() {
        #expect(Self.scannerPieces("Hello world, it's 12345 o'clock!!\n\n  done  ") ==
                ["Hello", " world", ",", " it", "'s", " ", "123", "45", " o", "'clock", "!!\n\n", " ", " done", "  "])
        #expect(Self.scannerPieces("I'LL  see\t\tyou") == ["I", "'LL", " ", " see", "\t", "\tyou"])
    }

    @Test func oddCasesMatchICU() {
        let cases = [
            "", " ", "  ", "\n", " \n ", "a\r\n\r\nb", "x  \n\t y", "'s'S'ſ'll'LL'Ve're'd'M't", "don't'", "''s",
            "日本語のテキスト、です。", "naïve café — “quotes” …", "١٢٣٤ ٥٦ ½¾ Ⅻ ²³", "emoji 🧪🚀 and ZWJ 👩‍💻 ok",
            "tabs\t\tand\u{0B}vertical\u{0C}feed\u{85}nel\u{A0}nbsp\u{2028}ls\u{3000}ideo", "a.b,c;d!e?f", "  ...  ---\n\n",
            "((hello)) [x] {y}", "e\u{301}t\u{E9}", "1 22 333 4444 55555", "$100.00 and 3.14159", "ǅungla ǈ", "a\u{200B}b",
            "\u{10400}\u{10428} 𝐀𝐁 𝟙𝟚", "line\r\rnext", "   \n", "word   ", "\t\n", "\u{FEFF}bom", "ߊߋ", "a'", "'",
        ]
        for text in cases {
            #expect(Self.scannerPieces(text) == Self.regexPieces(text), "\(text.debugDescription)")
        }
    }

    @Test func randomUnicodeMatchesICU() {
        // Characters from every class the pattern tells apart, plus astral and combining ones.
        let alphabet: [Unicode.Scalar] = Array("aZé日ſ'sSltLdrevm0١½Ⅻ \t\n\r\u{0B}\u{0C}\u{85}\u{A0}\u{2028}\u{3000}.,!?-_()\"$€\u{301}\u{200B}🧪𝐀𝟙\u{10400}".unicodeScalars)
        var generator = SplitMix(seed: 5)
        for _ in 0..<3000 {
            let length = Int(generator.next() % 24)
            var text = String.UnicodeScalarView()
            for _ in 0..<length { text.append(alphabet[Int(generator.next() % UInt64(alphabet.count))]) }
            let string = String(text)
            let expected = Self.regexPieces(string)
            let found = Self.scannerPieces(string)
            if found != expected {
                Issue.record("\(string.debugDescription): scanner \(found) regex \(expected)")
                return
            }
        }
    }

    @Test func shippedCorpusMatchesICU() throws {
        // Every document of the shipped corpus (train and eval, 3.3 MB).
        var documents = 0
        var pieces = 0
        for split in ["train", "eval"] {
            let reader = try DocumentReader(path: join(repositoryRoot, "data/corpus/\(split).jsonl.zst"))
            while let document = try reader.next() {
                let expected = Self.regexPieces(document.text)
                let found = Self.scannerPieces(document.text)
                #expect(found == expected, "\(document.location)")
                if found != expected { return }
                documents += 1
                pieces += found.count
            }
        }
        #expect(documents == 1433 && pieces > 500_000, "\(documents) documents, \(pieces) pieces")
    }

    @Test func piecesCoverInvalidUTF8() {
        let bytes: [UInt8] = [0x61, 0xFF, 0x62, 0xC3, 0x20, 0xE6, 0x97, 0x0A, 0xF0, 0x9F, 0x98, 0x80, 0x80, 0xED, 0xA0, 0x80]
        let pieces = PreTokenizer().pieces(bytes)
        #expect(Array(pieces.joined()) == bytes)
        #expect(pieces.allSatisfy { !$0.isEmpty })
    }
}
