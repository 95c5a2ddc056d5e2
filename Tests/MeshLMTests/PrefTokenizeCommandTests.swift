import Foundation
import Testing

/// `meshlm data pref-tokenize` end to end under mpirun, on DPOCommandTests' pairs and KTO
/// samples with its base model and byte tokenizer: the same bytes on 1 and 2 ranks; dpo and kto
/// from the directories give the losses of the JSONL, bitwise; a run whose settings differ from
/// the directory's, and bad lines, are refused with their messages.
@Suite(.serialized) struct PrefTokenizeCommandTests {
    /// `meshlm data pref-tokenize` with `config` and the tests' base (train.seq_len 256, as the runs).
    func prefTokenize(_ ranks: Int, config: String, _ input: String, _ output: String, _ extra: [String] = []) throws -> Launch {
        let arguments = ["data", "pref-tokenize", "--config", repositoryRoot.appendingPathComponent(config).path,
                         "--init-from", SFTCommandTests.base, "--tokenizer", "bytes", "--set", "train.seq_len=256",
                         "--input", input, "--output", output, "--shard-tokens", "4000"]
        return try Launcher.mpirun(ranks, "meshlm", arguments + SFTCommandTests.qwenModel.flatMap { ["--set", $0] } + extra)
    }

    func files(_ directory: String) -> (names: [String], contents: [Data]) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        return (names, names.map { FileManager.default.contents(atPath: directory + "/" + $0) ?? Data() })
    }

    @Test func tokenizedPairsTrainAsTheirJSONL() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-pref-shards-\(getpid())-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var made: [(names: [String], contents: [Data])] = []
        for ranks in [1, 2] {
            let output = directory + "/train-\(ranks)"
            let launch = try prefTokenize(ranks, config: "configs/dpo/tiny-lora.yaml", DPOCommandTests.data.train, output)
            #expect(launch.status == 0, "\(launch.standardError)")
            made.append(files(output))
            if ranks == 1 { print("pref-tokenize: \((launch.standardError + launch.standardOutput).split(separator: "\n").filter { $0.contains("wrote") })") }
        }
        #expect(made[0].names.first == "manifest.json" && made[0].names.count > 2, "\(made[0].names)")
        #expect(made[0].contents == made[1].contents, "the preference shards differ between 1 and 2 ranks")
        let train = directory + "/train-2", eval = directory + "/eval"
        #expect(try prefTokenize(2, config: "configs/dpo/tiny-lora.yaml", DPOCommandTests.data.eval, eval).status == 0)

        let tests = DPOCommandTests()
        let (fromJSONL, expected) = try tests.dpo(1, tests.lora)
        let (fromShards, got) = try tests.dpo(1, tests.lora + ["--set", "data.train=\(train)", "--set", "data.eval=\(eval)"])
        #expect(fromJSONL.status == 0 && fromShards.status == 0, "\(fromJSONL.standardError)\n\(fromShards.standardError)")
        print("dpo losses from the JSONL \(expected.sorted { $0.key < $1.key }.map(\.value)), from the shards \(got.sorted { $0.key < $1.key }.map(\.value))")
        #expect(expected.count == 6 && got == expected, "losses from the shards differ from the JSONL's")
        // The same fit counts and rows, reported alike.
        let kept = ": 25 pairs kept; dropped: 15 longer than seq_len 256; packed into 25 rows of 256 (84.1% of slots used)"
        #expect(fromJSONL.standardOutput.contains(DPOCommandTests.data.train + kept) && fromShards.standardOutput.contains(train + kept),
                "\(fromJSONL.standardOutput)\n\(fromShards.standardOutput)")

        let refused = try tests.dpo(1, tests.lora + ["--set", "data.train=\(train)", "--set", "preference.truncation=keep_start"]).0
        #expect(refused.status != 0 && refused.standardError.contains("\(train) was tokenized with preference.truncation drop, but this run has keep_start; tokenize the samples again with this run's config (meshlm data pref-tokenize), or set preference.truncation as they were"), "\(refused.standardError)")
        let longer = try tests.dpo(1, tests.lora + ["--set", "data.train=\(train)", "--set", "train.seq_len=128"]).0
        #expect(longer.status != 0 && longer.standardError.contains("\(train) was tokenized with train.seq_len 256, but this run has 128"), "\(longer.standardError)")

        let bad = directory + "/bad.jsonl"
        try Data((#"{"prompt": "Q", "chosen": " yes", "rejected": " no"}"# + "\n" + #"{"prompt": "Q", "chosen": " yes", "rejected": ""}"# + "\n").utf8)
            .write(to: URL(fileURLWithPath: bad))
        let badOutput = directory + "/bad-shards"
        let jsonl = try tests.dpo(1, tests.lora + ["--set", "data.train=\(bad)"]).0
        let sharded = try prefTokenize(2, config: "configs/dpo/tiny-lora.yaml", bad, badOutput)
        let message = jsonl.standardError.split(separator: "\n").first { $0.contains("\(bad):2: ") }.map(String.init)
        #expect(message != nil && jsonl.status != 0, "\(jsonl.standardError)")
        #expect(sharded.status != 0 && sharded.standardError.contains(message ?? "?"), "pref-tokenize: \(sharded.standardError)\ndpo: \(message ?? "")")
        #expect(!FileManager.default.fileExists(atPath: badOutput), "a failed run leaves no output")
    }

    @Test func tokenizedKTOSamplesTrainAsTheirJSONL() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-kto-shards-\(getpid())-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var made: [[Data]] = []
        for ranks in [1, 2] {
            let launch = try prefTokenize(ranks, config: "configs/kto/tiny-lora.yaml", DPOCommandTests.data.kto, directory + "/kto-\(ranks)")
            #expect(launch.status == 0, "\(launch.standardError)")
            made.append(files(directory + "/kto-\(ranks)").contents)
        }
        #expect(made[0] == made[1] && made[0].count > 1, "the KTO shards differ between 1 and 2 ranks")
        func kto(_ extra: [String]) throws -> (Launch, [Int: Double]) {
            let run = directory + "/run-\(UUID().uuidString.prefix(6))"
            var arguments = ["kto", "--config", repositoryRoot.appendingPathComponent("configs/kto/tiny-lora.yaml").path,
                             "--init-from", SFTCommandTests.base, "--tokenizer", "bytes",
                             "--set", "run.dir=\(run)", "--set", "train.steps=4", "--set", "train.log_interval=1",
                             "--set", "train.seq_len=256", "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2",
                             "--set", "checkpoint.interval=0", "--set", "optimizer.lr=0.01", "--set", "lora.r=8", "--set", "lora.lora_alpha=16"]
            arguments += SFTCommandTests.qwenModel.flatMap { ["--set", $0] } + extra
            let launch = try Launcher.mpirun(1, "meshlm", arguments)
            return (launch, (try? losses(in: URL(fileURLWithPath: run))) ?? [:])
        }
        let (fromJSONL, expected) = try kto(["--set", "data.train=\(DPOCommandTests.data.kto)"])
        let (fromShards, got) = try kto(["--set", "data.train=\(directory)/kto-2"])
        #expect(fromJSONL.status == 0 && fromShards.status == 0, "\(fromJSONL.standardError)\n\(fromShards.standardError)")
        print("kto losses from the JSONL \(expected.sorted { $0.key < $1.key }.map(\.value)), from the shards \(got.sorted { $0.key < $1.key }.map(\.value))")
        #expect(expected.count == 4 && got == expected, "losses from the shards differ from the JSONL's")

        let cut = try kto(["--set", "data.train=\(directory)/kto-1", "--set", "preference.truncation=keep_end"]).0
        #expect(cut.status != 0 && cut.standardError.contains("\(directory)/kto-1 was tokenized with preference.truncation drop, but this run has keep_end"), "\(cut.standardError)")
    }
}
