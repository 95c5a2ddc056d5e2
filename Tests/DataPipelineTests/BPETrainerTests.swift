import DataPipeline
import Foundation
import Testing

@Suite struct BPETrainerTests {
    static func counts(_ documents: [String]) -> PieceCounts {
        let counts = PieceCounts()
        for document in documents { counts.add(document: document) }
        return counts
    }

    static func mergeTexts(_ model: BPEModel) -> [String] {
        model.merges.map { String(decoding: model.tokens[Int($0.left)], as: UTF8.self) + "+" + String(decoding: model.tokens[Int($0.right)], as: UTF8.self) }
    }

    @Test func handCheckedMergeSequence() throws {
        // Pieces "ab" ×1, " ab" ×2, "abc" ×1. Pair counts: (a,b) 4, (" ",a) 2, (b,c) 1.
        // Merge 1: a+b → 256 "ab" (4). Then (" ",ab) 2 and (ab,c) 1. Merge 2: " "+ab → 257.
        // Merge 3 needs min frequency 1: ab+c → 258 "abc".
        let documents = ["ab ab ab", "abc"]
        let trainer = try BPETrainer(options: .init(vocabularySize: 256 + 3 + 1, specialTokens: ["<|end_of_text|>"], minimumFrequency: 1))
        let model = trainer.train(Self.counts(documents))
        #expect(Self.mergeTexts(model) == ["a+b", " +ab", "ab+c"])
        #expect(model.merges.map(\.result) == [256, 257, 258])
        #expect(model.specialTokens == [.init(content: "<|end_of_text|>", id: 259)])
        // The default minimum frequency 2 stops before the single "abc".
        let stopped = try BPETrainer(options: .init(vocabularySize: 300, specialTokens: ["<|end_of_text|>"])).train(Self.counts(documents))
        #expect(Self.mergeTexts(stopped) == ["a+b", " +ab"])
        #expect(stopped.count == 259)
    }

    @Test func tiesGoToTheSmallerPair() throws {
        // "ab", " cd": every pair occurs once. Smallest key first: (" ",c) < (a,b) < (c,d); after
        // " c" is made, (c,d) is gone and (" c",d) is new: " c"+d comes last.
        let trainer = try BPETrainer(options: .init(vocabularySize: 256 + 3 + 1, specialTokens: ["<|end_of_text|>"], minimumFrequency: 1))
        let model = trainer.train(Self.counts(["ab cd"]))
        #expect(Self.mergeTexts(model) == [" +c", "a+b", " c+d"])
    }

    @Test func repeatedLettersAndReusedTokens() throws {
        // "aaaa" ×3 → a+a (9 occurrences counted as pairs: 3 per piece), then aa+aa.
        let trainer = try BPETrainer(options: .init(vocabularySize: 270, specialTokens: ["<|end_of_text|>"], minimumFrequency: 1))
        let model = trainer.train(Self.counts(["aaaa", "aaaa", "aaaa"]))
        #expect(Self.mergeTexts(model) == ["a+a", "aa+aa"])
        // Whatever the merge order, no two ids spell the same bytes (a merge whose bytes exist
        // reuses that id).
        let counts = PieceCounts()
        counts.add(piece: Array("abc".utf8), count: 5)
        counts.add(piece: Array("ab".utf8), count: 4)
        counts.add(piece: Array("bcx".utf8), count: 9)
        counts.add(piece: Array("abcx".utf8), count: 1)
        let shared = try BPETrainer(options: .init(vocabularySize: 264, specialTokens: ["<|end_of_text|>"], minimumFrequency: 1)).train(counts)
        #expect(Self.mergeTexts(shared) == ["b+c", "bc+x", "a+bc", "a+b", "a+bcx"])
        #expect(Set(shared.tokens).count == shared.tokens.count, "no two ids with the same bytes")
    }

    /// The trainer against a naive one that recounts every pair after every merge.
    @Test func matchesNaiveRecount() throws {
        var generator = SplitMix(seed: 11)
        let words = ["the", " the", " cat", " sat", " on", " mat", "ther", " there", " at", "\n", " a", "a", " 12", "3", "!"]
        var documents = [String]()
        for _ in 0..<200 {
            documents.append((0..<Int(generator.next() % 20)).map { _ in words[Int(generator.next() % UInt64(words.count))] }.joined())
        }
        let counts = Self.counts(documents)
        let vocabulary = 256 + 40 + 1
        let model = try BPETrainer(options: .init(vocabularySize: vocabulary, specialTokens: ["<|end_of_text|>"], minimumFrequency: 1)).train(counts)
        // Naive: words as id arrays, recount all pairs each step, take max count, smallest pair.
        var pieces = counts.sortedEntries().map { (ids: $0.piece.map { Int32($0) }, count: $0.count) }
        var tokens = (0..<256).map { [UInt8($0)] }
        var expected = [BPEModel.Merge]()
        while tokens.count < vocabulary - 1 {
            var pairCounts = [[Int32]: Int]()
            for piece in pieces where piece.ids.count > 1 {
                for index in 0..<piece.ids.count - 1 { pairCounts[[piece.ids[index], piece.ids[index + 1]], default: 0] += piece.count }
            }
            guard let best = pairCounts.filter({ $0.value > 0 }).min(by: { ($1.value, $0.key[0], $0.key[1]) < ($0.value, $1.key[0], $1.key[1]) }) else { break }
            let bytes = tokens[Int(best.key[0])] + tokens[Int(best.key[1])]
            let id = tokens.firstIndex(of: bytes).map { Int32($0) } ?? Int32(tokens.count)
            if id == Int32(tokens.count) { tokens.append(bytes) }
            expected.append(.init(left: best.key[0], right: best.key[1], result: id))
            pieces = pieces.map { piece in
                var out = [Int32]()
                var index = 0
                while index < piece.ids.count {
                    if index + 1 < piece.ids.count, piece.ids[index] == best.key[0], piece.ids[index + 1] == best.key[1] {
                        out.append(id)
                        index += 2
                    } else {
                        out.append(piece.ids[index])
                        index += 1
                    }
                }
                return (out, piece.count)
            }
        }
        #expect(model.merges == expected)
        #expect(model.merges.count >= 30)
    }

    @Test func badOptionsAreRefused() {
        expectDataError("--vocab-size 260 is too small: 256 byte tokens + 6 special tokens need at least 262") {
            _ = try BPETrainer(options: .init(vocabularySize: 260))
        }
        expectDataError("--min-frequency must be at least 1, got 0") {
            _ = try BPETrainer(options: .init(vocabularySize: 1000, minimumFrequency: 0))
        }
        expectDataError("special token '<|pad|>' is given twice") {
            _ = try BPETrainer(options: .init(vocabularySize: 1000, specialTokens: ["<|pad|>", "<|end_of_text|>", "<|pad|>"]))
        }
    }
}
