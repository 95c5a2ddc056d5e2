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

    /// Inputs without text (an empty file, records whose text is empty) are refused by both
    /// commands with the inputs named, under mpirun with one message, and nothing is written.
    @Test func inputsWithoutTextAreRefusedAndNothingIsWritten() throws {
        let directory = Self.scratch("empty")
        let empty = directory.appendingPathComponent("empty.jsonl").path
        let blank = directory.appendingPathComponent("blank.jsonl").path
        try Data().write(to: URL(fileURLWithPath: empty))
        try Data("{\"text\": \"\"}\n{\"text\": \"\"}\n".utf8).write(to: URL(fileURLWithPath: blank))
        let tokenizer = directory.appendingPathComponent("t.json").path
        var launch = try Launcher.plain("meshlm", ["tokenizer", "train", "--input", empty, "--vocab-size", "300", "--output", tokenizer])
        #expect(launch.status == 1)
        #expect(launch.standardError.contains("meshlm: error: \(empty): no documents; nothing to train on, nothing written "
                                              + "(give inputs with text; --text-field names the JSONL field, now 'text')\n"), "\(launch.standardError)")
        launch = try Launcher.mpirun(2, "meshlm", ["tokenizer", "train", "--input", empty, blank, "--vocab-size", "300", "--output", tokenizer])
        #expect(launch.status != 0)
        #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
        #expect(launch.standardError.contains("meshlm: error: \(empty), \(blank): 2 documents, all with empty text; nothing to train on"),
                "\(launch.standardError)")
        #expect(!FileManager.default.fileExists(atPath: tokenizer))
        let shards = directory.appendingPathComponent("shards").path
        launch = try Launcher.mpirun(2, "meshlm", ["data", "tokenize", "--input", empty, blank, "--output", shards])
        #expect(launch.status != 0)
        #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
        #expect(launch.standardError.contains("meshlm: error: \(empty), \(blank): 2 documents, all with empty text; nothing to tokenize, "
                                              + "nothing written (give inputs with text; --text-field names the JSONL field, now 'text')\n"),
                "\(launch.standardError)")
        #expect(!FileManager.default.fileExists(atPath: shards), "the output directory it made is removed again")
    }

    /// An output that exists or cannot be made is refused before any counting or tokenizing,
    /// with one message under mpirun (every check runs in one collective step, so one mpirun
    /// case per command shows the agreement); `--overwrite` replaces a tokenizer, missing parent
    /// directories are made, and relative outputs work.
    @Test func outputsAreCheckedBeforeAnyWork() throws {
        let directory = Self.scratch("outputs")
        let file = directory.appendingPathComponent("file.txt").path
        try Data("not a directory\n".utf8).write(to: URL(fileURLWithPath: file))
        func train(_ output: String, _ extra: [String] = [], ranks: Int = 2) throws -> Launch {
            let arguments = ["tokenizer", "train", "--input", Self.corpus, "--vocab-size", "300", "--output", output] + extra
            return ranks == 1 ? try Launcher.plain("meshlm", arguments, directory: directory.path)
                              : try Launcher.mpirun(ranks, "meshlm", arguments)
        }
        let refusals = [
            (2, file, "\(file): exists (pass --overwrite to replace it, or choose another --output)"),
            (1, directory.path, "\(directory.path): is a directory (--output names the tokenizer.json file to write)"),
            (1, file + "/t.json", "\(file)/t.json: cannot be created: \(file) is not a directory (choose another --output)"),
            (1, "/proc/meshlm-t.json", "/proc/meshlm-t.json: cannot be created: /proc takes no new files ("),
        ]
        for (ranks, output, message) in refusals {
            let launch = try train(output, ranks: ranks)
            #expect(launch.status != 0)
            #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
            #expect(launch.standardError.contains("meshlm: error: " + message), "\(launch.standardError)")
            #expect(!launch.standardError.contains("count pieces") && !launch.standardOutput.contains("counted"), "refused before counting")
        }
        #expect(Self.contents(file) == Data("not a directory\n".utf8))
        let replaced = try train(file, ["--overwrite"], ranks: 1)
        #expect(replaced.status == 0, "\(replaced.standardError)")
        #expect((Self.contents(file) ?? Data()).count > 1_000)
        let nested = directory.appendingPathComponent("new/sub/t.json").path
        let made = try train(nested, ranks: 1)
        #expect(made.status == 0, "\(made.standardError)")
        #expect(FileManager.default.fileExists(atPath: nested))
        let relative = try train("relative.json", ranks: 1)
        #expect(relative.status == 0, "\(relative.standardError)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("relative.json").path))
        let shards = try Launcher.plain("meshlm", ["data", "tokenize", "--input", Self.corpus, "--output", "shards"], directory: directory.path)
        #expect(shards.status == 0, "\(shards.standardError)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("shards/manifest.json").path))

        for (ranks, output, message) in [(2, file + "/s", "\(file)/s: cannot be created: \(file) is not a directory (choose another --output)"),
                                         (1, "/proc/meshlm-s", "/proc/meshlm-s: cannot be created: /proc takes no new files (")] {
            let arguments = ["data", "tokenize", "--input", Self.corpus, "--output", output]
            let launch = ranks == 1 ? try Launcher.plain("meshlm", arguments) : try Launcher.mpirun(ranks, "meshlm", arguments)
            #expect(launch.status != 0)
            #expect(launch.standardError.components(separatedBy: "meshlm: error").count == 2, "\(launch.standardError)")
            #expect(launch.standardError.contains("meshlm: error: " + message), "\(launch.standardError)")
            #expect(!launch.standardError.contains("tokenize "), "refused before tokenizing")
        }
    }

    /// `data tokenize` killed (SIGKILL on rank 0 while its third shard is still a `.tmp` file)
    /// under mpirun -np 2 keeps its two committed shards; a rerun with other options is refused,
    /// and the same command finishes it: the same shard and manifest bytes as an uninterrupted
    /// run, no leftovers.
    @Test func killedTokenizeResumesToTheSameBytes() throws {
        let directory = Self.scratch("resume")
        func tokenize(_ output: String, shardTokens: Int = 20_000, environment: [String: String] = [:]) throws -> Launch {
            let executable = Launcher.productsDirectory.appendingPathComponent("meshlm").path
            var exports = [String]()
            for key in environment.keys.sorted() { exports += ["-x", key] }
            return try Launcher.run("/usr/bin/env", ["mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root",
                                                     "-x", "OPENBLAS_NUM_THREADS=1"] + exports
                                        + [executable, "data", "tokenize", "--input", Self.corpus, "--output", output,
                                           "--shard-tokens", "\(shardTokens)"],
                                    environment: environment, timeout: 120)
        }
        func files(_ output: String) -> [String: Data] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
            return Dictionary(uniqueKeysWithValues: names.map { ($0, Self.contents(output + "/" + $0) ?? Data()) })
        }
        let reference = directory.appendingPathComponent("reference").path
        let uninterrupted = try tokenize(reference)
        #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")
        let expected = files(reference)
        #expect(expected["manifest.json"] != nil && expected.keys.filter { $0.hasSuffix(".h5") }.count >= 4, "\(expected.keys.sorted())")

        let output = directory.appendingPathComponent("killed").path
        let killed = try tokenize(output, environment: ["MESHLM_TEST_KILL_AFTER": "tokenize:2"])
        #expect(killed.status != 0)
        #expect(files(output).keys.sorted() == [".progress", "shard_00000.h5", "shard_00001.h5", "shard_00002.h5.tmp"],
                "\(files(output).keys.sorted())")
        let done = (try? FileManager.default.contentsOfDirectory(atPath: output + "/.progress/tokenize")) ?? []
        #expect(done.sorted() == ["00000.done", "00001.done", "plan"], "\(done)")

        let other = try tokenize(output, shardTokens: 30_000)
        #expect(other.status != 0)
        #expect(other.standardError.contains("meshlm: error: \(output): holds a partial run with different inputs or options "
                                             + "(\(output)/.progress/tokenize/plan differs); use another --output or delete this one"),
                "\(other.standardError)")

        let rerun = try tokenize(output)
        #expect(rerun.status == 0, "\(rerun.standardError)")
        #expect((rerun.standardOutput + rerun.standardError).contains("\(output): resuming a killed run: keeping its 2 shards"),
                "\(rerun.standardOutput) \(rerun.standardError)")
        let resumed = files(output)
        #expect(resumed.keys.sorted() == expected.keys.sorted(), "\(resumed.keys.sorted())")
        for (name, bytes) in expected { #expect(resumed[name] == bytes, "\(name) differs after kill -9 and rerun") }
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
