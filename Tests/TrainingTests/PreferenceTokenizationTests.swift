import DataPipeline
import Foundation
import Testing
import Training

/// Preference pairs and KTO samples through the chat template into ids and loss masks (only the
/// final answer supervised, one prompt for both sides), and fitting them to rows.
@Suite struct PreferenceTokenizationTests {
    let tokenizer = ByteTokenizer()

    func tokenization(_ tokenizer: any Tokenizer = ByteTokenizer()) throws -> PreferenceTokenization {
        PreferenceTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: SFTTokenization.chatML))
    }

    let prompt = [ChatTurn(.system, "Be brief."), ChatTurn(.user, "2+2?"), ChatTurn(.assistant, "4"), ChatTurn(.user, "And 3+3?")]

    @Test func onlyTheFinalAnswerIsSupervisedAfterOnePrompt() throws {
        let pair = PreferencePair(source: "x:1", chosen: .conversation(prompt + [ChatTurn(.assistant, "6")]),
                                  rejected: .conversation(prompt + [ChatTurn(.assistant, "seven")]), margin: 1.5)
        let tokenized = try tokenization().tokenize(pair)
        #expect(tokenized.source == "x:1" && tokenized.margin == 1.5)
        // The earlier answer "4" is context, not supervised.
        #expect(tokenizer.supervisedText(tokenized.chosen) == "6<|im_end|>\n")
        #expect(tokenizer.supervisedText(tokenized.rejected) == "seven<|im_end|>\n")
        let renderedPrompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"
        #expect(tokenized.promptLength == tokenizer.encode(renderedPrompt).count)
        #expect(tokenizer.decode(Array(tokenized.rejected.ids.prefix(tokenized.promptLength))) == renderedPrompt)
        #expect(tokenized.chosen.ids.prefix(tokenized.promptLength) == tokenized.rejected.ids.prefix(tokenized.promptLength))

        // Plain text: the prompt's ids, then the completion's and EOS, supervised.
        let text = try tokenization().tokenize(PreferencePair(source: "x:2", chosen: .text(prompt: "Sky:", completion: " blue"),
                                                              rejected: .text(prompt: "Sky:", completion: " red")))
        #expect(text.chosen.ids == tokenizer.encode("Sky: blue") + [tokenizer.eosId])
        #expect(text.rejected.supervised == [false, false, false, false] + [Bool](repeating: true, count: 5))
        #expect(text.promptLength == 4 && text.margin == nil)
    }

    @Test func unpairedSamplesKeepTheirLabel() throws {
        let sample = UnpairedSample(source: "k:3", content: .conversation(prompt + [ChatTurn(.assistant, "6")]), desirable: false)
        let tokenized = try tokenization().tokenize(sample)
        #expect(tokenized.source == "k:3" && !tokenized.desirable)
        #expect(tokenizer.supervisedText(tokenized.sample) == "6<|im_end|>\n")
    }

    /// Gives every call's ids a different first token, as a template or tokenizer that does not
    /// render one prompt the same way twice would.
    final class DriftingTokenizer: Tokenizer, @unchecked Sendable {
        let bytes = ByteTokenizer()
        var calls: Int32 = 0
        var identity: TokenizerIdentity { bytes.identity }
        var longestTokenByteCount: Int { bytes.longestTokenByteCount }
        func encode(_ text: String) -> [Int32] {
            calls += 1
            return [calls] + bytes.encode(text)
        }
        func decode(_ ids: [Int32]) -> String { bytes.decode(ids) }
    }

    @Test func promptsThatComeOutDifferentlyAreRefused() throws {
        let pair = PreferencePair(source: "x:9", chosen: .text(prompt: "Sky:", completion: " blue"), rejected: .text(prompt: "Sky:", completion: " red"))
        #expect(throws: DataError("x:9: the prompt comes out as different tokens before the chosen answer than before the rejected one (5 and 5 tokens, first differing at token 0); the chat template and tokenizer must give one prompt the same tokens whatever the answer")) {
            _ = try tokenization(DriftingTokenizer()).tokenize(pair)
        }
    }

    /// A pair with a 4-token prompt (ids 1…4), a 3-token chosen answer and a 5-token rejected one.
    let pair = TokenizedPair(source: "p:1",
                             chosen: TokenizedSample(ids: [1, 2, 3, 4, 10, 11, 12], supervised: [false, false, false, false, true, true, true]),
                             rejected: TokenizedSample(ids: [1, 2, 3, 4, 20, 21, 22, 23, 24],
                                                       supervised: [false, false, false, false, true, true, true, true, true]),
                             margin: 0.25)

    func ids(_ fit: PreferenceFit<TokenizedPair>) -> [[Int32]]? {
        switch fit {
        case .kept(let pair), .truncated(let pair): [pair.chosen.ids, pair.rejected.ids]
        case .tooLong, .unsupervised: nil
        }
    }

    @Test func pairsAreFittedBothSidesAlike() {
        #expect(pair.promptLength == 4)
        #expect(pair.fitted(to: 9, truncation: .drop) == .kept(pair))
        #expect(pair.fitted(to: 8, truncation: .drop) == .tooLong)
        // keep_start: each side keeps its first 8 tokens.
        guard case .truncated(let start) = pair.fitted(to: 8, truncation: .keepStart) else { Issue.record("not truncated"); return }
        #expect([start.chosen.ids, start.rejected.ids] == [[1, 2, 3, 4, 10, 11, 12], [1, 2, 3, 4, 20, 21, 22, 23]])
        #expect(start.margin == 0.25 && start.source == "p:1")
        // keep_end: both sides lose the same prompt tokens, so they keep one prompt.
        guard case .truncated(let end) = pair.fitted(to: 7, truncation: .keepEnd) else { Issue.record("not truncated"); return }
        #expect([end.chosen.ids, end.rejected.ids] == [[3, 4, 10, 11, 12], [3, 4, 20, 21, 22, 23, 24]])
        #expect(end.promptLength == 2 && end.rejected.supervised.filter { $0 }.count == 5)
        #expect(ids(pair.fitted(to: 5, truncation: .keepEnd)) == [[10, 11, 12], [20, 21, 22, 23, 24]])
        // A cut into the answers is not made at the start, and at the end it can leave nothing to learn.
        #expect(pair.fitted(to: 4, truncation: .keepEnd) == .tooLong)
        #expect(pair.fitted(to: 4, truncation: .keepStart) == .unsupervised)
        #expect(ids(pair.fitted(to: 6, truncation: .keepStart)) == [[1, 2, 3, 4, 10, 11], [1, 2, 3, 4, 20, 21]])
        var unsupervised = pair
        unsupervised.rejected.supervised = [Bool](repeating: false, count: 9)
        #expect(unsupervised.fitted(to: 16, truncation: .drop) == .unsupervised)

        var counts = PreferenceFitCounts()
        let kept = [9, 8, 8, 4, 5].enumerated().compactMap { index, length in
            counts.count(pair.fitted(to: length, truncation: index == 1 ? .drop : index == 2 ? .keepStart : .keepEnd))
        }
        #expect(kept.count == 3 && counts == { var c = PreferenceFitCounts(); (c.kept, c.truncated, c.tooLong) = (1, 2, 2); return c }())
        #expect(counts.summary(noun: "pairs", sequenceLength: 8) == "3 pairs kept (2 of them truncated); dropped: 2 longer than seq_len 8")
        _ = counts.count(unsupervised.fitted(to: 16, truncation: .drop))
        #expect(counts.summary(noun: "pairs", sequenceLength: 8) == "3 pairs kept (2 of them truncated); dropped: 2 longer than seq_len 8, 1 with nothing supervised")
    }

    @Test func unpairedSamplesAreFittedAsSFTSamples() {
        let sample = TokenizedUnpaired(source: "k:1", sample: pair.rejected, desirable: true)
        #expect(sample.fitted(to: 9, truncation: .drop) == .kept(sample))
        #expect(sample.fitted(to: 8, truncation: .drop) == .tooLong)
        #expect(sample.fitted(to: 4, truncation: .keepStart) == .unsupervised)
        #expect(sample.fitted(to: 3, truncation: .keepEnd) == .truncated(TokenizedUnpaired(
            source: "k:1", sample: TokenizedSample(ids: [22, 23, 24], supervised: [true, true, true]), desirable: true)))
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The shipped preference and KTO sets read, and tokenize with one prompt per pair.
    @Test func theShippedPreferenceDataReadsAndTokenizes() throws {
        let tokenization = try tokenization()
        for split in ["train", "eval"] {
            let reader = try PreferenceRecordReader(path: Self.repository + "/data/preference/\(split).jsonl", format: .explicitPrompt)
            let pairs = try reader.readAll()
            #expect(reader.identicalCount == 0 && pairs.count >= 64)
            for pair in pairs {
                let tokenized = try tokenization.tokenize(pair)
                #expect(tokenized.promptLength > 0 && tokenized.chosen.ids != tokenized.rejected.ids)
            }
        }
        let unpaired = try UnpairedRecordReader(path: Self.repository + "/data/preference/kto.jsonl").readAll()
        #expect(unpaired.filter(\.desirable).count * 2 == unpaired.count)
    }
}
