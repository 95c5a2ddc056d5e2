import DataPipeline
import Testing

@Suite struct TextOperatorTests {
    func applied(_ operation: some CleaningOperator, _ text: String) -> (String, OperatorOutcome, OperatorEffect) {
        var document = CleaningDocument(text: text)
        var effect = OperatorEffect()
        let result = operation.apply(to: &document, effect: &effect)
        return (document.text, result, effect)
    }

    @Test func unicodeNormalization() {
        let decomposed = "cafe\u{301} ﬁne Ａ"
        let (nfc, _, effect) = applied(UnicodeNormalizer(), decomposed)
        #expect(nfc.unicodeScalars.elementsEqual("caf\u{E9} ﬁne Ａ".unicodeScalars))
        #expect(effect.charactersChanged == 2)
        let (nfkc, _, _) = applied(UnicodeNormalizer(.init(form: .nfkc)), decomposed)
        #expect(nfkc.unicodeScalars.elementsEqual("caf\u{E9} fine A".unicodeScalars))
        let (ascii, _, untouched) = applied(UnicodeNormalizer(), "plain ascii")
        #expect(ascii == "plain ascii" && untouched.charactersChanged == 0)
    }

    @Test func whitespaceCleanup() {
        let text = "\n\n\u{FEFF}Title  \r\n\r\n\r\n\r\nbody\u{0007} text\u{00A0}here\t\nnext\u{200B}\n\n\n"
        let (cleaned, _, effect) = applied(WhitespaceCleaner(), text)
        #expect(cleaned == "Title\n\nbody text here\nnext\n")
        #expect(effect.charactersChanged > 0)
        var config = WhitespaceCleaner.Config()
        config.maxBlankLines = 0
        config.stripDocument = false
        #expect(applied(WhitespaceCleaner(config), "a\n\n\nb\n\n").0 == "a\nb\n")
        let (same, _, none) = applied(WhitespaceCleaner(), "clean\n\ntext\n")
        #expect(same == "clean\n\ntext\n" && none.charactersChanged == 0)
    }

    @Test func c4Rules() {
        let good = (0..<5).map { "This is sentence number \($0) of the text." }
        let text = (good + ["Menu Home About", "Please enable JavaScript to view this site.", "Read our privacy policy here.",
                            "ok."]).joined(separator: "\n")
        let (kept, result, effect) = applied(C4Filter(), text)
        #expect(result == .keep)
        #expect(kept == good.joined(separator: "\n"))
        #expect(effect.replacements["lines_removed"] == 4)
        #expect(applied(C4Filter(), good.prefix(4).joined(separator: "\n")).1 == .drop("sentences 4 < min_sentences 5"))
        #expect(applied(C4Filter(), text + "\nLorem ipsum dolor sit amet.").1 == .drop("contains 'lorem ipsum'"))
        #expect(applied(C4Filter(), text + "\nint main() { return 0; }").1 == .drop("contains '{'"))
        var config = C4Filter.Config()
        config.dropCurlyBrace = false
        config.requireTerminalPunctuation = false
        #expect(applied(C4Filter(config), text + "\nint main() { return 0; }").1 == .keep)
        #expect(applied(C4Filter(), "no terminal punctuation anywhere here\nnor here either friend").1
                == .drop("no line passes the line rules"))
    }

    @Test func scriptAndLanguage() {
        let english = "The cat sat on the mat and looked at the door of the house with care."
        #expect(outcome(ScriptFilter(), english) == .keep)
        let russian = "Кошка сидела на коврике и смотрела на дверь дома с осторожностью."
        #expect(outcome(ScriptFilter(), russian) == .drop("script_fraction 0 < min_script_fraction 0.65 (mostly cyrillic)"))
        var config = ScriptFilter.Config()
        config.allowedScripts = [.cyrillic, .latin]
        #expect(outcome(ScriptFilter(config), russian) == .keep)
        #expect(outcome(ScriptFilter(), "日本語の文章です。漢字とかなを含みます。") .isDrop)
        config = ScriptFilter.Config()
        config.language = .english
        #expect(outcome(ScriptFilter(config), english) == .keep)
        let german = "Die Katze saß auf der Matte und schaute mit Sorgfalt auf die Tür des Hauses."
        #expect(outcome(ScriptFilter(config), german) == .drop("english_score 0 < min_english_score 0.1"))
        #expect(outcome(ScriptFilter(), "12345 !!! ---") == .drop("no letters"))
    }

    @Test func urlBlocklist() throws {
        var config = URLBlocklistFilter.Config()
        config.domains = ["spam.example", "www.Bad.test"]
        let filter = try URLBlocklistFilter(config)
        var document = CleaningDocument(text: "clean text", url: "https://ads.spam.example/page?x=1")
        #expect(filter.apply(to: &document) == .drop("url field is on blocked domain spam.example"))
        document = CleaningDocument(text: "see www.bad.test/offer today", url: "https://good.example/")
        #expect(filter.apply(to: &document) == .drop("text links to blocked domain bad.test"))
        document = CleaningDocument(text: "see http://notspam.example and mail me at a@spam.example.org", url: nil)
        #expect(filter.apply(to: &document) == .keep)

        let directory = scratchDirectory()
        let list = join(directory, "blocked.txt")
        try write("# blocked\nspam.example\n\nnot a domain!\n", to: list)
        config = URLBlocklistFilter.Config()
        config.domainsFile = list
        expectDataError("\(list):4: 'not a domain!' is not a domain (letters, digits, '-' and '.', like example.com)") {
            _ = try URLBlocklistFilter(config)
        }
        config.domainsFile = join(directory, "missing.txt")
        expectDataError("\(join(directory, "missing.txt")): no such file (url_blocklist.domains_file)") {
            _ = try URLBlocklistFilter(config)
        }
    }
}
