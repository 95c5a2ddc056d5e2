import Foundation
import Testing

/// `meshlm tokenizer train` and `meshlm data tokenize` under mpirun: the same bytes on 1 and 2
/// ranks; bad inputs end with the named error. Python parity runs when its venv exists.
@Suite(.serialized) struct TokenizerCommandTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var corpus: String { repository.appendingPathComponent("data/corpus/eval.jsonl.zst").path }

    static func scratch(_ name: String) -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-tokenizer-\(getpid())-\(name)")
        try? FileManager.default.removeItem(at: directory)
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test func trainingAndTokenizingGiveTheSameBytesOnOneAndTwoRanks() throws {
        let directory = Self.scratch("ranks")
        var tokenizers = [Data]()
        for ranks in [1, 2] {
            let output = directory.appendingPathComponent("tokenizer-\(ranks).json").path
            let launch = try Launcher.mpirun(ranks, "meshlm", ["tokenizer", "train", "--input", Self.corpus, "--vocab-size", "1000", "--output", output])
            #expect(launch.status == 0, "\(launch.standardError)")
            tokenizers.append(Self.contents(output) ?? Data())
        }
        #expect(tokenizers[0].count > 10_000)
        #expect(tokenizers[0] == tokenizers[1], "tokenizer.json differs between 1 and 2 ranks")
        let tokenizer = directory.appendingPathComponent("tokenizer-1.json").path

        var shards = [[Data]]()
        for ranks in [1, 2] {
            let output = directory.appendingPathComponent("shards-\(ranks)").path
            let launch = try Launcher.mpirun(ranks, "meshlm", ["data", "tokenize", "--input", Self.corpus, "--tokenizer", tokenizer,
                                                               "--output", output, "--shard-tokens", "20000"])
            #expect(launch.status == 0, "\(launch.standardError)")
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).sorted()
            #expect(names.contains("manifest.json") && names.count > 2, "\(names)")
            shards.append(names.map { Self.contents(output + "/" + $0) ?? Data() })
        }
        #expect(shards[0] == shards[1], "shards differ between 1 and 2 ranks")
        let manifest = String(decoding: Self.contents(directory.appendingPathComponent("shards-1/manifest.json").path) ?? Data(), as: UTF8.self)
        #expect(manifest.contains("\"vocab_size\" : 1000") || manifest.contains("\"vocab_size\": 1000"), "\(manifest.prefix(400))")
        #expect(manifest.contains("uint16"))
    }

    @Test func encodePrintsIdsWithAndWithoutSpecialTokens() throws {
        let directory = Self.scratch("encode")
        let tokenizer = directory.appendingPathComponent("t.json").path
        let trained = try Launcher.plain("meshlm", ["tokenizer", "train", "--input", Self.corpus, "--vocab-size", "600",
                                                    "--special-tokens", "<|end_of_text|>", "<|eot_id|>", "--output", tokenizer])
        #expect(trained.status == 0, "\(trained.standardError)")
        let special = try Launcher.plain("meshlm", ["tokenizer", "encode", "--tokenizer", tokenizer, "--text", "<|eot_id|>", "--special-tokens"])
        #expect(special.lines == ["[599]"], "\(special.standardOutput) \(special.standardError)")
        let plain = try Launcher.plain("meshlm", ["tokenizer", "encode", "--tokenizer", tokenizer, "--text", "<|eot_id|>"])
        let ids = plain.lines.first.map { $0.dropFirst().dropLast().split(separator: ",").compactMap { Int($0) } } ?? []
        #expect(ids.count > 1 && ids.allSatisfy { $0 < 598 }, "\(plain.standardOutput)")
    }

    @Test func badInputsEndWithNamedErrors() throws {
        let directory = Self.scratch("bad")
        let missing = directory.appendingPathComponent("missing.jsonl").path
        let output = directory.appendingPathComponent("t.json").path
        var launch = try Launcher.plain("meshlm", ["tokenizer", "train", "--input", missing, "--vocab-size", "1000", "--output", output])
        #expect(launch.status != 0)
        #expect(launch.standardError.contains("meshlm: error: \(missing): no such file or directory"), "\(launch.standardError)")
        launch = try Launcher.plain("meshlm", ["tokenizer", "train", "--input", Self.corpus, "--vocab-size", "200", "--output", output])
        #expect(launch.standardError.contains("meshlm: error: --vocab-size 200 is too small: 256 byte tokens + 6 special tokens need at least 262"), "\(launch.standardError)")
        let broken = directory.appendingPathComponent("broken.json").path
        try Data("{\"model\": [".utf8).write(to: URL(fileURLWithPath: broken))
        launch = try Launcher.mpirun(2, "meshlm", ["data", "tokenize", "--input", Self.corpus, "--tokenizer", broken,
                                                  "--output", directory.appendingPathComponent("s").path])
        #expect(launch.status != 0)
        #expect(launch.standardError.contains("meshlm: error: \(broken): malformed JSON (not a tokenizer.json)"), "\(launch.standardError)")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("s/manifest.json").path))
        // A malformed line seen by both ranks mid-stream: one message, nothing left behind.
        let bad = directory.appendingPathComponent("bad.jsonl").path
        try Data("{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": 3}\n".utf8).write(to: URL(fileURLWithPath: bad))
        let shards = directory.appendingPathComponent("s2").path
        launch = try Launcher.mpirun(2, "meshlm", ["data", "tokenize", "--input", bad, "--output", shards, "--shard-tokens", "4"])
        #expect(launch.status != 0)
        #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
        #expect(launch.standardError.contains("meshlm: error: \(bad):3: field 'text' is a number, not a string"), "\(launch.standardError)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: shards)) ?? []).isEmpty)
    }

    /// The python of tools/setup-python.sh's venv, which has Hugging Face `tokenizers`.
    static let tokenizerPython = ProcessInfo.processInfo.environment["MESHLM_TOKENIZER_PYTHON"] ?? "/tmp/venv-tokenizer/bin/python"

    /// tools/check-tokenizer-parity.py against Hugging Face `tokenizers`, when
    /// tools/setup-python.sh has made its venv (/tmp/venv-tokenizer); reported as skipped otherwise.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: tokenizerPython),
                   "no python with Hugging Face tokenizers at \(tokenizerPython) (run tools/setup-python.sh, or set MESHLM_TOKENIZER_PYTHON)"))
    func pythonParity() throws {
        let python = Self.tokenizerPython
        let meshlm = Launcher.productsDirectory.appendingPathComponent("meshlm").path
        let script = Self.repository.appendingPathComponent("tools/check-tokenizer-parity.py").path
        let launch = try Launcher.run(python, [script, "--meshlm", meshlm, "--input", Self.corpus, "--vocab-size", "2000"], timeout: 120)
        #expect(launch.status == 0, "\(launch.standardOutput) \(launch.standardError)")
        #expect(launch.standardOutput.hasPrefix("PASS tokenizer parity:"), "\(launch.standardOutput)")
    }
}
