import Foundation
import Runtime
import Testing

/// A corpus with planted near-duplicates, built from the shipped corpus with a fixed seed:
/// 240 originals (King James Bible chapters and Jargon File entries) and, for every 4th of
/// them, copies at known word-edit rates, written after all originals (so originals are kept).
struct PlantedCorpus {
    static let editRates: [(label: String, rate: Double)] = [
        ("exact", 0), ("whitespace", 0), ("1%", 0.01), ("2%", 0.02), ("5%", 0.05), ("10%", 0.10), ("20%", 0.20),
    ]
    let directory: String
    /// Copy id → (original id, edit-rate label).
    let planted: [String: (original: String, rate: String)]
    let documentCount: Int

    static func build(in directory: String) throws -> PlantedCorpus {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let compressed = try [UInt8](Data(contentsOf: root.appendingPathComponent("data/corpus/train.jsonl.zst")))
        let lines = try Zstd.decompress(compressed).split(separator: 0x0A)
        var originals = [(id: String, text: String)]()
        var counts = ["kjv": 0, "jargon": 0]
        for line in lines {
            guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let id = object["id"] as? String, let text = object["text"] as? String else { continue }
            let source = String(id.prefix { $0 != "-" })
            guard let count = counts[source], count < 120 else { continue }
            counts[source] = count + 1
            originals.append((id, text))
        }
        var random = SplitMix(seed: 20_261_124)
        let vocabulary = originals.flatMap { $0.text.split(separator: " ").prefix(50).map(String.init) }
        var planted = [String: (String, String)]()
        var copies = [[String: Any]]()
        for (index, original) in originals.enumerated() where index % 4 == 0 {
            for (label, rate) in editRates {
                var words = original.text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                let edits = Int((rate * Double(words.count)).rounded())
                for _ in 0..<edits {
                    words[Int(random.next() % UInt64(words.count))] = vocabulary[Int(random.next() % UInt64(vocabulary.count))]
                }
                var text = words.joined(separator: " ")
                if label == "whitespace" { text = "  " + text.replacingOccurrences(of: " ", with: "  \n") + "\n" }
                let id = "copy-\(original.id)-\(label)"
                planted[id] = (original.id, label)
                copies.append(["id": id, "text": text, "planted_of": original.id])
            }
        }
        // Shuffle the copies so every output unit holds a mix of edit rates.
        for index in stride(from: copies.count - 1, to: 0, by: -1) {
            copies.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        try FileManager.default.createDirectory(atPath: directory + "/in", withIntermediateDirectories: true)
        func jsonl(_ objects: [[String: Any]]) throws -> [UInt8] {
            var bytes = [UInt8]()
            for object in objects {
                bytes += try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                bytes.append(0x0A)
            }
            return bytes
        }
        let originalObjects = originals.map { ["id": $0.id, "text": $0.text, "source": "corpus"] as [String: Any] }
        for part in 0..<3 {
            let slice = Array(originalObjects[(part * 80)..<(part * 80 + 80)])
            let bytes = try jsonl(slice)
            if part == 1 {
                try Data(Zstd.compress(bytes)).write(to: URL(fileURLWithPath: "\(directory)/in/a-originals-\(part).jsonl.zst"))
            } else {
                try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/in/a-originals-\(part).jsonl"))
            }
        }
        let perFile = (copies.count + 3) / 4
        for part in 0..<4 {
            let slice = Array(copies[(part * perFile)..<min(copies.count, (part + 1) * perFile)])
            try Data(jsonl(slice)).write(to: URL(fileURLWithPath: "\(directory)/in/b-copies-\(part).jsonl"))
        }
        return PlantedCorpus(directory: directory, planted: planted, documentCount: originals.count + copies.count)
    }
}

/// A fixed pseudo-random stream (splitmix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

/// The planted corpus, built once for the suite.
let plantedCorpus: Result<PlantedCorpus, any Error> = Result {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dedup-tests-\(getpid())").path
    return try PlantedCorpus.build(in: directory)
}

/// Every output file of a dedup run (kept/, removed/, removed.jsonl, stats counts) by name.
func dedupOutput(_ directory: String) throws -> [String: Data] {
    var files = [String: Data]()
    for folder in ["kept", "removed"] {
        for name in try FileManager.default.contentsOfDirectory(atPath: "\(directory)/\(folder)") {
            files["\(folder)/\(name)"] = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(folder)/\(name)"))
        }
    }
    files["removed.jsonl"] = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/removed.jsonl"))
    files["counts"] = try JSONSerialization.data(withJSONObject: statsCounts(directory), options: [.sortedKeys])
    return files
}

func statsCounts(_ directory: String) throws -> [String: Any] {
    let stats = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(directory)/stats.json"))) as? [String: Any]
    return stats?["counts"] as? [String: Any] ?? [:]
}

func statsTiming(_ directory: String) throws -> [String: Any] {
    let stats = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(directory)/stats.json"))) as? [String: Any]
    return stats?["timing"] as? [String: Any] ?? [:]
}

/// `meshlm data dedup` on the planted corpus under `mpirun -np ranks`.
func runDedup(_ ranks: Int, output: String, _ extra: [String] = [], environment: [String: String] = [:]) throws -> Launch {
    let corpus = try plantedCorpus.get()
    let executable = Launcher.productsDirectory.appendingPathComponent("meshlm").path
    var exports = [String]()
    for key in environment.keys.sorted() { exports += ["-x", key] }
    return try Launcher.run("/usr/bin/env", ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--allow-run-as-root",
                                             "-x", "OPENBLAS_NUM_THREADS=1"] + exports
                                + [executable, "data", "dedup", "--input", corpus.directory + "/in", "--output", output] + extra,
                            environment: environment, timeout: 180)
}

/// The reference run: one rank, default options.
let referenceRun: Result<String, any Error> = Result {
    let output = try plantedCorpus.get().directory + "/out-reference"
    let launch = try runDedup(1, output: output)
    guard launch.status == 0 else { throw JobError("reference dedup failed: \(launch.standardError)") }
    return output
}

@Suite(.serialized) struct DedupTests {
    /// Precision and recall against the planted truth, printed per edit rate.
    @Test func plantedNearDuplicatesAreFoundWithHighPrecision() throws {
        let corpus = try plantedCorpus.get()
        let output = try referenceRun.get()
        let removed = try String(contentsOfFile: output + "/removed.jsonl", encoding: .utf8).split(separator: "\n")
        var correct = 0
        var found = [String: Int]()
        var falsePositives = [String]()
        for line in removed {
            let row = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
            let id = try #require(row["id"]), original = try #require(row["duplicate_of"])
            if let truth = corpus.planted[id], truth.original == original || corpus.planted[original]?.original == truth.original {
                correct += 1
                found[truth.rate, default: 0] += 1
            } else {
                falsePositives.append("\(id) duplicate_of \(original)")
            }
        }
        let perRate = corpus.planted.count / PlantedCorpus.editRates.count
        let precision = Double(correct) / Double(max(removed.count, 1))
        let recall = Double(correct) / Double(corpus.planted.count)
        print("dedup on \(corpus.documentCount) documents, \(corpus.planted.count) planted copies: precision \(String(format: "%.3f", precision)), recall \(String(format: "%.3f", recall))")
        for (label, _) in PlantedCorpus.editRates {
            print("  recall at \(label) edits: \(String(format: "%.3f", Double(found[label, default: 0]) / Double(perRate)))")
        }
        #expect(falsePositives.isEmpty, "\(falsePositives)")
        #expect(precision >= 0.99)
        // LSH 14 × 8 finds pairs with 5-gram Jaccard ≥ ~0.8 (≈ 2 % word edits) almost always
        // and 20 % edits (Jaccard ≈ 0.2) almost never.
        #expect(found["exact"] == perRate && found["whitespace"] == perRate && found["1%"] == perRate)
        #expect(found["2%", default: 0] >= perRate * 8 / 10)
        #expect(found["20%", default: 0] <= perRate / 10)
        let counts = try statsCounts(output)
        #expect(counts["documents"] as? Int == corpus.documentCount)
        #expect(counts["exact_duplicates"] as? Int == 2 * perRate)
        #expect(counts["removed"] as? Int == removed.count)
        #expect(counts["kept"] as? Int == corpus.documentCount - removed.count)
    }

    @Test(arguments: [2, 4])
    func outputIsTheSameBytesOnAnyRankCount(ranks: Int) throws {
        let reference = try dedupOutput(try referenceRun.get())
        let output = try plantedCorpus.get().directory + "/out-ranks-\(ranks)"
        let launch = try runDedup(ranks, output: output)
        #expect(launch.status == 0, "\(launch.standardError)")
        let files = try dedupOutput(output)
        #expect(files.keys.sorted() == reference.keys.sorted())
        for (name, bytes) in reference { #expect(files[name] == bytes, "\(name) differs on \(ranks) ranks") }
    }

    @Test(arguments: ["signatures:1", "output:1"])
    func killNineThenRerunGivesIdenticalOutput(point: String) throws {
        let reference = try dedupOutput(try referenceRun.get())
        let output = try plantedCorpus.get().directory + "/out-kill-\(point.prefix { $0 != ":" })"
        let killed = try runDedup(2, output: output, environment: ["MESHLM_TEST_KILL_AFTER": point])
        #expect(killed.status != 0)
        #expect(!FileManager.default.fileExists(atPath: output + "/removed.jsonl"))
        let progress = point.hasPrefix("output") ? "dedup" : "dedup-signatures"
        let done = try FileManager.default.contentsOfDirectory(atPath: "\(output)/.progress/\(progress)").filter { $0.hasSuffix(".done") }
        #expect(!done.isEmpty && done.count < 7, "\(done)")
        let rerun = try runDedup(2, output: output)
        #expect(rerun.status == 0, "\(rerun.standardError)")
        let files = try dedupOutput(output)
        #expect(files.keys.sorted() == reference.keys.sorted())
        for (name, bytes) in reference { #expect(files[name] == bytes, "\(name) differs after kill -9 at \(point) and rerun") }
    }

    @Test func aTinyMemoryBudgetSpillsSortedRunsWithTheSameOutput() throws {
        let reference = try dedupOutput(try referenceRun.get())
        let output = try plantedCorpus.get().directory + "/out-spill"
        let launch = try runDedup(2, output: output, ["--memory-mb", "0.05"])
        #expect(launch.status == 0, "\(launch.standardError)")
        #expect((try statsTiming(output)["spilled_runs"] as? Int ?? 0) >= 4)
        let files = try dedupOutput(output)
        for (name, bytes) in reference { #expect(files[name] == bytes, "\(name) differs with spilling") }
    }

    /// Verification drops pairs under the threshold: at 0.8 the 5 %-edit copies (5-gram
    /// Jaccard ≈ 0.6) that LSH happened to pair are no longer removed; the result is the same on
    /// 1 and 3 ranks.
    @Test func jaccardVerificationKeepsOnlyPairsAboveTheThreshold() throws {
        let corpus = try plantedCorpus.get()
        let one = corpus.directory + "/out-verify-1", three = corpus.directory + "/out-verify-3"
        for (ranks, output) in [(1, one), (3, three)] {
            let launch = try runDedup(ranks, output: output, ["--verify-jaccard", "--threshold", "0.8"])
            #expect(launch.status == 0, "\(launch.standardError)")
        }
        let verified = try dedupOutput(one)
        #expect(try dedupOutput(three) == verified)
        let removed = try String(contentsOfFile: one + "/removed.jsonl", encoding: .utf8)
        #expect(!removed.contains("-5%\""))
        #expect(!removed.contains("-10%\""))
        #expect(removed.contains("-1%\""))
        let counts = try statsCounts(one)
        #expect((counts["rejected_pairs"] as? Int ?? 0) > 0)
    }
}

extension DedupTests {
    /// `--exact` alone removes exactly the verbatim and whitespace-only copies; `--minhash`
    /// alone finds those too (identical shingles) plus the near ones, without counting any as
    /// exact.
    @Test func exactAloneAndMinHashAlone() throws {
        let corpus = try plantedCorpus.get()
        let perRate = corpus.planted.count / PlantedCorpus.editRates.count
        let exact = corpus.directory + "/out-exact", minhash = corpus.directory + "/out-minhash"
        #expect(try runDedup(2, output: exact, ["--exact"]).status == 0)
        #expect(try runDedup(2, output: minhash, ["--minhash"]).status == 0)
        let removed = try String(contentsOfFile: exact + "/removed.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(removed.count == 2 * perRate)
        #expect(removed.allSatisfy { $0.contains("-exact\"") || $0.contains("-whitespace\"") })
        let exactCounts = try statsCounts(exact), minhashCounts = try statsCounts(minhash)
        #expect(exactCounts["exact_duplicates"] as? Int == 2 * perRate)
        #expect(exactCounts["near_duplicates"] as? Int == 0)
        #expect(minhashCounts["exact_duplicates"] as? Int == 0)
        #expect(minhashCounts["removed"] as? Int == (try statsCounts(try referenceRun.get()))["removed"] as? Int)
    }
}

/// Clusters that are long chains (each document a 300-word window of the King James Bible
/// shifted 6 words from the previous one, so only near neighbours are similar), scattered over
/// three files so that each chain's first document in input order sits in its middle: every
/// other member must be removed as a duplicate of that one, which takes label propagation in
/// both directions along the chain, across ranks.
@Suite(.serialized) struct DedupChainTests {
    @Test(arguments: [1, 3])
    func chainsCollapseOntoTheirFirstDocument(ranks: Int) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let lines = try Zstd.decompress([UInt8](Data(contentsOf: root.appendingPathComponent("data/corpus/train.jsonl.zst"))))
            .split(separator: 0x0A)
        var words = [Substring]()
        for line in lines where words.count < 2000 {
            let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            guard let id = object?["id"] as? String, id.hasPrefix("kjv"), let text = object?["text"] as? String else { continue }
            words += text.split(separator: " ")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dedup-chains-\(getpid())-\(ranks)").path
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory + "/in", withIntermediateDirectories: true)
        // Chain A: windows 0..<40 at offset 0; chain B: 0..<40 at offset 1000 (disjoint text).
        var documents = [(id: String, text: String)]()
        for (chain, offset) in [("a", 0), ("b", 1000)] {
            for index in 0..<40 {
                let start = offset + index * 6
                documents.append(("\(chain)\(index)", words[start..<start + 300].joined(separator: " ")))
            }
        }
        // A fixed scattering: chain members in the order 20, 0, 39, 10, 30, … (b likewise), dealt
        // round-robin to three files; the first line of c-0 is a20.
        let order = (0..<40).map { ($0 * 17 + 20) % 40 }
        var files = [[String]](repeating: [], count: 3)
        var fileIds = [[String]](repeating: [], count: 3)
        var position = 0
        for index in order {
            for chain in ["a", "b"] {
                let document = try #require(documents.first { $0.id == "\(chain)\(index)" })
                let object = try JSONSerialization.data(withJSONObject: ["id": document.id, "text": document.text], options: [.sortedKeys])
                files[position % 3].append(String(decoding: object, as: UTF8.self))
                fileIds[position % 3].append(document.id)
                position += 1
            }
        }
        for (number, file) in files.enumerated() {
            try Data((file.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: "\(directory)/in/c-\(number).jsonl"))
        }
        // The first document of each chain in input order (file c-0 first, then its lines).
        let inputOrder = fileIds.flatMap { $0 }
        let firstA = try #require(inputOrder.first { $0.hasPrefix("a") })
        let firstB = try #require(inputOrder.first { $0.hasPrefix("b") })
        #expect(firstA == "a20")

        let launch = try Launcher.mpirun(ranks, "meshlm", ["data", "dedup", "--input", directory + "/in", "--output", directory + "/out",
                                                           "--minhash"], timeout: 120)
        #expect(launch.status == 0, "\(launch.standardError)")
        var duplicateOf = [String: String]()
        for line in try String(contentsOfFile: directory + "/out/removed.jsonl", encoding: .utf8).split(separator: "\n") {
            let row = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
            duplicateOf[row["id"] ?? ""] = row["duplicate_of"]
        }
        #expect(duplicateOf.count == 78)
        for document in documents where document.id != firstA && document.id != firstB {
            #expect(duplicateOf[document.id] == (document.id.hasPrefix("a") ? firstA : firstB), "\(document.id)")
        }
        let counts = try statsCounts(directory + "/out")
        #expect(counts["clusters"] as? Int == 2)
        #expect(counts["kept"] as? Int == 2)
        // Neighbours only pair with neighbours: reaching the chain's ends takes several rounds.
        #expect((try statsTiming(directory + "/out")["rounds"] as? Int ?? 0) >= 3)
    }
}

@Suite(.serialized) struct DedupInputErrorTests {
    private func scratch(_ name: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dedup-errors-\(getpid())/\(name)").path
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func aBadLineEndsTheJobOnceNamingFileAndLine() throws {
        let directory = try scratch("bad-line")
        try Data("{\"text\":\"one two three\"}\n".utf8).write(to: URL(fileURLWithPath: directory + "/a.jsonl"))
        try Data("{\"text\":\"four five\"}\n{\"text\": 3}\n".utf8).write(to: URL(fileURLWithPath: directory + "/b.jsonl"))
        let launch = try Launcher.mpirun(2, "meshlm", ["data", "dedup", "--input", directory + "/a.jsonl", directory + "/b.jsonl",
                                                       "--output", directory + "/out"], timeout: 60)
        #expect(launch.status != 0)
        #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
        #expect(launch.standardError.contains(": \(directory)/b.jsonl:2: field 'text' is a number, not a string\n"), "\(launch.standardError)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/out/removed.jsonl"))
    }

    @Test func skippedInputsAreCountedLoggedAndListed() throws {
        let directory = try scratch("skip")
        try Data("{\"text\":\"alpha beta gamma delta epsilon\"}\nnot json\n{\"text\":\"alpha beta gamma delta epsilon\"}\n".utf8)
            .write(to: URL(fileURLWithPath: directory + "/a.jsonl"))
        try Data().write(to: URL(fileURLWithPath: directory + "/empty.jsonl"))
        let launch = try Launcher.plain("meshlm", ["data", "dedup", "--input", directory + "/a.jsonl", directory + "/empty.jsonl",
                                                   "--output", directory + "/out", "--on-error", "skip"], timeout: 60)
        #expect(launch.status == 0, "\(launch.standardError)")
        let first = "\(directory)/a.jsonl:2: malformed JSON at byte 1: invalid literal (expected null)"
        let second = "\(directory)/empty.jsonl: empty file (no documents)"
        #expect(launch.standardError.contains("meshlm: warning: skipped \(first)\n"), "\(launch.standardError)")
        #expect(try String(contentsOfFile: directory + "/out/skipped.txt", encoding: .utf8) == first + "\n" + second + "\n")
        let counts = try statsCounts(directory + "/out")
        #expect(counts["skipped"] as? Int == 2)
        #expect(counts["documents"] as? Int == 2)
        #expect(counts["exact_duplicates"] as? Int == 1)
        #expect(try String(contentsOfFile: directory + "/out/removed.jsonl", encoding: .utf8) == "{\"id\":\"a:3\",\"duplicate_of\":\"a:1\"}\n")
    }

    @Test func aRerunWithOtherOptionsIsRefused() throws {
        let directory = try scratch("options")
        try Data("{\"text\":\"alpha beta\"}\n".utf8).write(to: URL(fileURLWithPath: directory + "/a.jsonl"))
        let first = try Launcher.plain("meshlm", ["data", "dedup", "--input", directory + "/a.jsonl", "--output", directory + "/out"])
        #expect(first.status == 0, "\(first.standardError)")
        let second = try Launcher.plain("meshlm", ["data", "dedup", "--input", directory + "/a.jsonl", "--output", directory + "/out",
                                                   "--bands", "20"])
        #expect(second.status != 0)
        #expect(second.standardError == "meshlm: error: \(directory)/out: holds a partial run with different inputs or options (\(directory)/out/.progress/dedup-signatures/plan differs); use another --output or delete this one\n")
    }
}
