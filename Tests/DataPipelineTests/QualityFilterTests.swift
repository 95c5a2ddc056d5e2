import DataPipeline
import Testing

/// Prose of `count` words, each of the stop words among them, mean length ~4.6.
func prose(words count: Int) -> String {
    let vocabulary = ["the", "river", "ran", "to", "sea", "and", "of", "that", "with", "stone", "bridges", "have"]
    return (0..<count).map { vocabulary[$0 % vocabulary.count] }.joined(separator: " ") + "."
}

func outcome(_ filter: some CleaningOperator, _ text: String) -> OperatorOutcome {
    var document = CleaningDocument(text: text)
    return filter.apply(to: &document)
}

@Suite struct GopherQualityFilterTests {
    let filter = GopherQualityFilter()

    @Test func wordCountBounds() {
        #expect(outcome(filter, prose(words: 50)) == .keep)
        #expect(outcome(filter, prose(words: 49)) == .drop("word_count 49 < min_words 50"))
        var config = GopherQualityFilter.Config()
        config.maxWords = 60
        #expect(outcome(GopherQualityFilter(config), prose(words: 60)) == .keep)
        #expect(outcome(GopherQualityFilter(config), prose(words: 61)) == .drop("word_count 61 > max_words 60"))
    }

    @Test func meanWordLength() {
        // 50 words of 2 letters and "the": mean below 3.
        let short = (0..<50).map { $0 % 5 == 0 ? "the" : "ab" }.joined(separator: " ")
        #expect(outcome(filter, short) == .drop("mean_word_length 2.2 < min_mean_word_length 3"))
        let long = "the of " + (0..<48).map { _ in "extraordinarily" }.joined(separator: " ")
        #expect(outcome(filter, long) == .drop("mean_word_length 14.5 > max_mean_word_length 10"))
    }

    @Test func symbolRatio() {
        // 50 words; 5 hashes is exactly 0.1 (kept), 6 is over.
        let words = prose(words: 50)
        #expect(outcome(filter, words + String(repeating: " #", count: 5)) == .keep)
        #expect(outcome(filter, words + String(repeating: " #", count: 6)) == .drop("symbol_word_ratio 0.12 > max_symbol_word_ratio 0.1"))
        #expect(outcome(filter, words + " wait... " + String(repeating: "… ", count: 5)) == .drop("symbol_word_ratio 0.118 > max_symbol_word_ratio 0.1"))
    }

    @Test func bulletAndEllipsisLines() {
        let line = "the river ran to the sea with stones"
        let bullets = (0..<10).map { _ in "- \(line)" } + [line]
        let nineOfTen = (0..<9).map { _ in "• \(line)" } + [line]
        #expect(outcome(filter, nineOfTen.joined(separator: "\n")) == .keep)
        #expect(outcome(filter, bullets.joined(separator: "\n")) == .drop("bullet_line_ratio 0.909 > max_bullet_line_ratio 0.9"))
        let ellipses = (0..<3).map { _ in "\(line)..." } + (0..<7).map { _ in line }
        #expect(outcome(filter, ellipses.joined(separator: "\n")) == .keep)
        let more = (0..<4).map { _ in "\(line)…" } + (0..<6).map { _ in line }
        #expect(outcome(filter, more.joined(separator: "\n")) == .drop("ellipsis_line_ratio 0.4 > max_ellipsis_line_ratio 0.3"))
    }

    @Test func alphabeticRatioAndStopWords() {
        #expect(outcome(filter, prose(words: 48) + " 1 2 3 4 5 6 7 8 9 10 11 12") == .keep)  // 48/60 = 0.8
        #expect(outcome(filter, prose(words: 48) + " 1 2 3 4 5 6 7 8 9 10 11 12 13")
                == .drop("alphabetic_word_ratio 0.787 < min_alphabetic_word_ratio 0.8"))
        let noStopWords = (0..<60).map { ["river", "stone", "bridge"][$0 % 3] }.joined(separator: " ") + " The"
        #expect(outcome(filter, noStopWords) == .drop("stop_words 1 < min_stop_words 2"))
        #expect(outcome(filter, noStopWords + " and") == .keep)
    }
}

@Suite struct GopherRepetitionFilterTests {
    let filter = GopherRepetitionFilter()

    /// Lines of distinct words, so no n-gram repeats.
    func distinctLines(_ count: Int, wordsPerLine: Int = 6) -> [String] {
        (0..<count).map { line in (0..<wordsPerLine).map { "w\(line)x\($0)" }.joined(separator: " ") }
    }

    @Test func duplicateLines() {
        var lines = distinctLines(10)
        lines[9] = lines[0]
        lines[8] = lines[1]
        lines[7] = lines[2]  // 3 of 10 duplicates: 0.3 is allowed, characters 3/10 > 0.2 are not
        var config = GopherRepetitionFilter.Config()
        config.maxDuplicateLineCharacterFraction = 1
        config.maxDuplicateParagraphCharacterFraction = 1
        config.maxDuplicateNGramCharacterFraction = [:]
        config.maxTopNGramCharacterFraction = [:]
        #expect(outcome(GopherRepetitionFilter(config), lines.joined(separator: "\n")) == .keep)
        lines[6] = lines[3]
        #expect(outcome(GopherRepetitionFilter(config), lines.joined(separator: "\n"))
                == .drop("duplicate_line_fraction 0.4 > max_duplicate_line_fraction 0.3"))
        #expect(outcome(filter, lines.joined(separator: "\n")).isDrop)
    }

    @Test func duplicateParagraphsByCharacters() {
        var config = GopherRepetitionFilter.Config()
        config.maxDuplicateLineFraction = 1
        config.maxDuplicateLineCharacterFraction = 1
        config.maxDuplicateNGramCharacterFraction = [:]
        config.maxTopNGramCharacterFraction = [:]
        let filter = GopherRepetitionFilter(config)
        var paragraphs = distinctLines(10)
        paragraphs[9] = paragraphs[0]
        paragraphs[8] = paragraphs[1]
        paragraphs[7] = paragraphs[2]  // 3 of 10 by count is allowed; ~0.29 of the characters is not
        if case .drop(let reason) = outcome(filter, paragraphs.joined(separator: "\n\n")) {
            #expect(reason.hasPrefix("duplicate_paragraph_character_fraction 0.2"))
            #expect(reason.hasSuffix("> max_duplicate_paragraph_character_fraction 0.2"))
        } else {
            Issue.record("three repeated paragraphs of ten must exceed 0.2 of the characters")
        }
        paragraphs[7] = "a distinct paragraph"
        paragraphs[8] = "another distinct paragraph"
        #expect(outcome(filter, paragraphs.joined(separator: "\n\n")) == .keep)
        paragraphs[8] = paragraphs[1]
        paragraphs[7] = paragraphs[2]
        paragraphs[6] = paragraphs[3]
        #expect(outcome(filter, paragraphs.joined(separator: "\n\n"))
                == .drop("duplicate_paragraph_fraction 0.4 > max_duplicate_paragraph_fraction 0.3"))
    }

    @Test func topNGram() {
        // "big dog" 5 times among 50 distinct words: 5 × 7 characters of ~385 ≤ 0.2; 12 times among 10 → over.
        let filler = (0..<50).map { "word\($0)" }
        let five = (filler + Array(repeating: "big dog", count: 5)).joined(separator: " ")
        #expect(outcome(filter, five) == .keep)
        let many = (filler.prefix(10) + Array(repeating: "big dog", count: 12)).joined(separator: " ")
        if case .drop(let reason) = outcome(filter, many) {
            #expect(reason.hasPrefix("top_2gram_character_fraction"))
        } else {
            Issue.record("a bigram repeated 12 times among 10 other words must be dropped")
        }
    }

    @Test func duplicateNGrams() {
        let filler = (0..<100).map { "word\($0)" }
        let phrase = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
        // Repeats count from the second occurrence: twice is ~0.09 of the characters, three times ~0.17.
        let twice = ([phrase] + filler + [phrase]).joined(separator: " ")
        #expect(outcome(filter, twice) == .keep)
        let thrice = ([phrase] + filler + [phrase, phrase]).joined(separator: " ")
        if case .drop(let reason) = outcome(filter, thrice) {
            #expect(reason.hasPrefix("duplicate_5gram_character_fraction 0.1"))
        } else {
            Issue.record("a 15-word phrase three times in 145 words must exceed 0.15 of the characters")
        }
        let once = ([phrase] + filler).joined(separator: " ")
        #expect(outcome(filter, once) == .keep)
    }
}

extension OperatorOutcome {
    var isDrop: Bool { if case .drop = self { true } else { false } }
}
