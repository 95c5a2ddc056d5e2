import DataPipeline
import Runtime
import Testing

@Suite struct CleaningRecipeTests {
    func decode(_ yaml: String) throws(ConfigError) -> CleaningRecipe {
        try ConfigLoader.decode(CleaningRecipe.self, yaml: yaml, source: "recipe.yaml")
    }

    func expectError(_ yaml: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try decode(yaml)
            Issue.record("expected the error: \(message)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.description == message, sourceLocation: sourceLocation)
        }
    }

    @Test func decodesOperatorsWithDefaults() throws {
        let recipe = try decode("""
            operators:
              - unicode_normalize: {form: nfkc}
              - whitespace_cleanup:
              - gopher_quality: {min_words: 20}
              - gopher_repetition: {max_top_ngram_character_fraction: {2: 0.25}}
              - c4: {drop_curly_brace: false}
              - script_language: {allowed_scripts: [latin, cyrillic], language: english}
              - url_blocklist: {domains: [spam.example]}
              - pii_scrub: {kinds: [email, phone]}
            """)
        var quality = GopherQualityFilter.Config()
        quality.minWords = 20
        var repetition = GopherRepetitionFilter.Config()
        repetition.maxTopNGramCharacterFraction = [2: 0.25]
        var c4 = C4Filter.Config()
        c4.dropCurlyBrace = false
        var script = ScriptFilter.Config()
        script.allowedScripts = [.latin, .cyrillic]
        script.language = .english
        var blocklist = URLBlocklistFilter.Config()
        blocklist.domains = ["spam.example"]
        var pii = PIIScrubber.Config()
        pii.kinds = [.email, .phone]
        #expect(recipe.operators == [.unicodeNormalize(.init(form: .nfkc)), .whitespaceCleanup(.init()), .gopherQuality(quality),
                                     .gopherRepetition(repetition), .c4(c4), .scriptLanguage(script), .urlBlocklist(blocklist),
                                     .piiScrub(pii)])
        #expect(try recipe.makeOperators().map(\.name) == OperatorSpec.names)
    }

    @Test func rejectsBadRecipesNamingTheKey() {
        expectError("operators:\n  - gopher_qualty: {}\n", "recipe.yaml: key 'operators.0': unknown operator 'gopher_qualty'; did you mean 'gopher_quality'?")
        expectError("operators:\n  - frobnicate: {}\n",
                    "recipe.yaml: key 'operators.0': unknown operator 'frobnicate'; known operators: unicode_normalize, whitespace_cleanup, gopher_quality, gopher_repetition, c4, script_language, url_blocklist, pii_scrub")
        expectError("operators:\n  - pii_scrub: {}\n    c4: {}\n",
                    "recipe.yaml: key 'operators.0': an operator is a mapping with one key, its name (e.g. '- gopher_quality: {min_words: 20}')")
        expectError("operators:\n  - gopher_quality: {min_word: 20}\n",
                    "recipe.yaml: key 'operators.0.gopher_quality.min_word': unknown key; did you mean 'min_words'?")
        expectError("operators:\n  - gopher_quality: {min_words: many}\n",
                    "recipe.yaml: key 'operators.0.gopher_quality.min_words': expected an integer, found 'many'")
        expectError("operators:\n  - c4: {}\n  - gopher_quality: {max_words: 10}\n",
                    "recipe.yaml: key 'operators.1.gopher_quality.max_words': value 10 is invalid: must be at least min_words 50")
        expectError("operators:\n  - unicode_normalize: {form: nfd}\n",
                    "recipe.yaml: key 'operators.0.unicode_normalize.form': value 'nfd' is not one of 'nfc', 'nfkc'")
        expectError("operators:\n  - pii_scrub: {kinds: [email, ssn]}\n",
                    "recipe.yaml: key 'operators.0.pii_scrub.kinds.1': value 'ssn' is not one of 'email', 'card', 'ip_address', 'phone'")
        expectError("operators: []\n",
                    "recipe.yaml: key 'operators': the recipe lists no operators (known: unicode_normalize, whitespace_cleanup, gopher_quality, gopher_repetition, c4, script_language, url_blocklist, pii_scrub)")
        expectError("operators:\n  - url_blocklist: {}\n",
                    "recipe.yaml: key 'operators.0.url_blocklist.domains': the blocklist is empty: list domains, or name a file in domains_file")
        expectError("operator:\n  - c4: {}\n", "recipe.yaml: key 'operators': required key is missing")
    }
}
