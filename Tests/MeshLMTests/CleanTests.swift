import Foundation
import Runtime
import Testing

/// A small cleaning corpus: 180 shipped documents (Bible, Jargon File, SQLite docs) in three
/// files of three formats, a file of planted junk (each document failing one operator), a
/// document full of personal data, a `.txt` and an `.html` page.
struct CleaningCorpus {
    let directory: String
    let recipe: String
    /// Eight sentences that share no five-word sequence (so no repetition rule fires).
    static let varied: String = {
        let nouns = ["river", "stone", "bridge", "forest", "candle", "window", "garden", "mountain", "harbor", "letter", "violin",
                     "lantern", "meadow", "castle", "engine", "feather", "island", "kettle", "ladder", "mirror", "orchard",
                     "pencil", "quarry", "saddle"]
        return (0..<8).map { "The \(nouns[$0]) saw the \(nouns[$0 + 8]) near a \(nouns[$0 + 16]). " }.joined()
    }()
    static let junk: [(id: String, text: String, filter: String)] = [
        ("junk-short", "Too short to be a document.", "gopher_quality"),
        ("junk-cyrillic", String(repeating: "Это предложение написано по-русски и не проходит фильтр письменности. ", count: 8),
         "script_language"),
        ("junk-repeated", String(repeating: "Buy cheap watches online now and save on every order today.\n", count: 30), "gopher_repetition"),
        ("junk-symbols", (0..<60).map { "#tag\($0) and the" }.joined(separator: " "), "gopher_quality"),
        ("junk-lorem", "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " + varied,
         "c4"),
    ]

    static func build(in directory: String) throws -> CleaningCorpus {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let compressed = try [UInt8](Data(contentsOf: root.appendingPathComponent("data/corpus/train.jsonl.zst")))
        let lines = try Zstd.decompress(compressed).split(separator: 0x0A)
        var picked = [String: [ArraySlice<UInt8>]]()
        for line in lines {
            guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let id = object["id"] as? String else { continue }
            let source = String(id.prefix { $0 != "-" })
            if picked[source, default: []].count < 60 { picked[source, default: []].append(line) }
        }
        let input = directory + "/in"
        try FileManager.default.createDirectory(atPath: input, withIntermediateDirectories: true)
        func jsonl(_ lines: [ArraySlice<UInt8>]) -> [UInt8] { lines.flatMap { Array($0) + [0x0A] } }
        try Data(jsonl(picked["kjv", default: []])).write(to: URL(fileURLWithPath: input + "/a-kjv.jsonl"))
        try Data(Zstd.compress(jsonl(picked["jargon", default: []]))).write(to: URL(fileURLWithPath: input + "/b-jargon.jsonl.zst"))
        try Data(jsonl(picked["sqlite", default: []])).write(to: URL(fileURLWithPath: input + "/c-sqlite.jsonl"))
        var junk = [UInt8]()
        let pii = "Contact Jane at jane.doe@example.com or +1-202-555-0173 from 192.168.10.20. " + varied
        for (id, text) in Self.junk.map({ ($0.id, $0.text) }) + [("pii", pii)] {
            junk += try JSONSerialization.data(withJSONObject: ["id": id, "text": text, "url": "https://\(id).example/"], options: [.sortedKeys])
            junk.append(0x0A)
        }
        try Data(junk).write(to: URL(fileURLWithPath: input + "/d-junk.jsonl"))
        try Data(("A plain text file is one document. " + varied).utf8)
            .write(to: URL(fileURLWithPath: input + "/e-note.txt"))
        let html = "<html><head><title>A Page</title><script>var x = 1;</script></head><body><nav>Home | About</nav>"
            + "<p>The page has a paragraph. " + varied + "</p></body></html>"
        try Data(html.utf8).write(to: URL(fileURLWithPath: input + "/f-page.html"))
        return CleaningCorpus(directory: directory, recipe: root.appendingPathComponent("configs/data/clean.yaml").path)
    }
}

let cleaningCorpus: Result<CleaningCorpus, any Error> = Result {
    try CleaningCorpus.build(in: FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-clean-tests-\(getpid())").path)
}

func runClean(_ ranks: Int, output: String, environment: [String: String] = [:]) throws -> Launch {
    let corpus = try cleaningCorpus.get()
    let executable = Launcher.productsDirectory.appendingPathComponent("meshlm").path
    var exports = [String]()
    for key in environment.keys.sorted() { exports += ["-x", key] }
    return try Launcher.run("/usr/bin/env", ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--allow-run-as-root",
                                             "-x", "OPENBLAS_NUM_THREADS=1"] + exports
                                + [executable, "data", "clean", "--input", corpus.directory + "/in", "--output", output,
                                   "--recipe", corpus.recipe],
                            environment: environment, timeout: 180)
}

let cleanReference: Result<String, any Error> = Result {
    let output = try cleaningCorpus.get().directory + "/out-reference"
    let launch = try runClean(1, output: output)
    guard launch.status == 0 else { throw JobError("reference clean failed: \(launch.standardError)") }
    return output
}

@Suite(.serialized) struct CleanTests {
    @Test func dropsPlantedJunkAndScrubsPersonalData() throws {
        let output = try cleanReference.get()
        let removed = try String(contentsOfFile: output + "/removed.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String]
        }
        let filterOf = Dictionary(removed.map { ($0["id"] ?? "", $0["filter"] ?? "") }, uniquingKeysWith: { first, _ in first })
        for junk in CleaningCorpus.junk { #expect(filterOf[junk.id] == junk.filter, "\(junk.id)") }
        #expect(removed.allSatisfy { !($0["reason"] ?? "").isEmpty })
        let counts = try statsCounts(output)
        let documents = counts["documents"] as? Int ?? 0
        #expect(documents == 180 + CleaningCorpus.junk.count + 1 + 2)
        // Most real documents stay.
        #expect((counts["kept"] as? Int ?? 0) >= 150)
        let kept = try Zstd.decompress([UInt8](Data(contentsOf: URL(fileURLWithPath: output + "/kept/00003.jsonl.zst"))))
        let text = String(decoding: kept, as: UTF8.self)
        #expect(text.contains("Contact Jane at <EMAIL> or <PHONE> from <IP_ADDRESS>. "))
        #expect(text.contains("\"url\":\"https:\\/\\/pii.example\\/\""), "every input field is kept byte for byte")
        let page = try Zstd.decompress([UInt8](Data(contentsOf: URL(fileURLWithPath: output + "/kept/00005.jsonl.zst"))))
        #expect(String(decoding: page, as: UTF8.self).hasPrefix("{\"id\":\"f-page\",\"text\":\"A Page\\n\\nThe page has a paragraph. The river"))
        let operators = counts["operators"] as? [[String: Any]] ?? []
        let pii = operators.first { $0["name"] as? String == "pii_scrub" }?["replacements"] as? [String: Int] ?? [:]
        #expect(pii["email", default: 0] >= 1 && pii["phone", default: 0] >= 1 && pii["ip_address", default: 0] >= 1)
    }

    @Test(arguments: [2, 4])
    func outputIsTheSameOnAnyRankCount(ranks: Int) throws {
        let reference = try dedupOutput(try cleanReference.get())
        let output = try cleaningCorpus.get().directory + "/out-\(ranks)"
        let launch = try runClean(ranks, output: output)
        #expect(launch.status == 0, "\(launch.standardError)")
        let files = try dedupOutput(output)
        #expect(files.keys.sorted() == reference.keys.sorted())
        for (name, bytes) in reference { #expect(files[name] == bytes, "\(name) differs on \(ranks) ranks") }
    }

    @Test func killNineThenRerunGivesIdenticalOutput() throws {
        let reference = try dedupOutput(try cleanReference.get())
        let output = try cleaningCorpus.get().directory + "/out-kill"
        let killed = try runClean(2, output: output, environment: ["MESHLM_TEST_KILL_AFTER": "clean:1"])
        #expect(killed.status != 0)
        #expect(!FileManager.default.fileExists(atPath: output + "/removed.jsonl"))
        let rerun = try runClean(2, output: output)
        #expect(rerun.status == 0, "\(rerun.standardError)")
        let files = try dedupOutput(output)
        for (name, bytes) in reference { #expect(files[name] == bytes, "\(name) differs after kill -9 and rerun") }
    }

    @Test func badRecipeAndBadInputFailWithOneClearLine() throws {
        let corpus = try cleaningCorpus.get()
        let recipe = corpus.directory + "/bad.yaml"
        try Data("operators:\n  - gopher_quality: {min_word: 3}\n".utf8).write(to: URL(fileURLWithPath: recipe))
        let bad = try Launcher.plain("meshlm", ["data", "clean", "--input", corpus.directory + "/in", "--output", corpus.directory + "/out-bad",
                                                "--recipe", recipe])
        #expect(bad.status == 1)
        #expect(bad.standardError.contains("meshlm: error: \(recipe): key 'operators.0.gopher_quality.min_word': unknown key; did you mean 'min_words'?\n"),
                "\(bad.standardError)")
        let broken = corpus.directory + "/broken.jsonl"
        try Data("{\"id\": \"a\", \"text\": \"fine\"}\n{\"id\": \"b\", \"text\": oops}\n".utf8).write(to: URL(fileURLWithPath: broken))
        let malformed = try Launcher.plain("meshlm", ["data", "clean", "--input", broken, "--output", corpus.directory + "/out-broken",
                                                      "--recipe", corpus.recipe])
        #expect(malformed.status == 1)
        #expect(malformed.standardError.contains("meshlm: error: \(broken):2: malformed JSON"), "\(malformed.standardError)")
        #expect(!FileManager.default.fileExists(atPath: corpus.directory + "/out-broken/kept/00000.jsonl.zst"))
        // With --on-error skip the bad line is counted and logged, the rest cleaned.
        let skipped = try Launcher.plain("meshlm", ["data", "clean", "--input", broken, "--output", corpus.directory + "/out-skip",
                                                    "--recipe", corpus.recipe, "--on-error", "skip"])
        #expect(skipped.status == 0, "\(skipped.standardError)")
        #expect(skipped.standardError.contains("meshlm: warning: skipped \(broken):2: malformed JSON"))
        let counts = try statsCounts(corpus.directory + "/out-skip")
        #expect(counts["skipped"] as? Int == 1 && counts["documents"] as? Int == 1)
    }
}
