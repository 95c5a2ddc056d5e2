import Foundation
import TensorComparison
import Testing

/// The python of /tmp/golden-venv (tools/golden/README.md), or of MESHLM_TRANSFORMERS_PYTHON when
/// set, if it imports transformers and torch; nil otherwise (the export test then skips, saying
/// why). Probed once per test process.
let transformersPython: String? = {
    let python = ProcessInfo.processInfo.environment["MESHLM_TRANSFORMERS_PYTHON"] ?? "/tmp/golden-venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python),
          let probe = try? Launcher.run(python, ["-c", "import transformers, torch"], timeout: 120), probe.status == 0 else { return nil }
    return python
}()

/// `meshlm reward` end to end: a scalar head on the small Qwen2 model imported from transformers
/// (SFTCommandTests.base) trained with the Bradley-Terry loss on the shipped pairs
/// (data/preference) with the byte tokenizer; data-, tensor- and pipeline-parallel layouts give
/// one rank's losses; the checkpoint exports as a …ForSequenceClassification that transformers
/// scores as MeshLM does; bad pair files and DPO keys are refused with the reason.
@Suite(.serialized) struct RewardCommandTests {
    static let config = repositoryRoot.appendingPathComponent("configs/reward/tiny.yaml").path
    static let data = repositoryRoot.appendingPathComponent("data/preference").path

    /// `meshlm reward` (or `dpo`) on `ranks` ranks in `run`: 6 steps of 8 pairs, no evaluation or
    /// checkpoint unless `extra` says so.
    static func launch(_ ranks: Int, _ extra: [String], run: URL, command: String = "reward", config: String = config) throws -> Launch {
        var arguments = [command, "--config", config, "--init-from", SFTCommandTests.base, "--tokenizer", "bytes",
                         "--set", "run.dir=\(run.path)", "--set", "train.steps=6", "--set", "train.log_interval=1",
                         "--set", "train.eval_interval=0", "--set", "train.seq_len=256", "--set", "train.global_batch_size=8",
                         "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=0",
                         "--set", "data.train=\(data)/train.jsonl", "--set", "data.eval=\(data)/eval.jsonl"]
        arguments += SFTCommandTests.qwenModel.flatMap { ["--set", $0] } + extra
        return try Launcher.mpirun(ranks, "meshlm", arguments, timeout: 600)
    }

    /// `launch` in a fresh directory, removed afterwards; its losses by step.
    func reward(_ ranks: Int, _ extra: [String], command: String = "reward", config: String = config) throws -> (Launch, [Int: Double]) {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-reward-\(getpid())-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(at: run) }
        let launch = try Self.launch(ranks, extra, run: run, command: command, config: config)
        return (launch, (try? losses(in: run)) ?? [:])
    }

    /// The trained reward model, once per test process: 40 steps at a constant lr 3e-3, the eval
    /// set's first 40 pairs scored before training, after step 0 and at the end; the step-40
    /// checkpoint kept for the export test.
    static let trained: (launch: Launch, run: URL) = {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-reward-trained-\(getpid())")
        try? FileManager.default.removeItem(at: run)
        let settings = ["train.steps=40", "train.micro_batch_size=4", "train.eval_interval=40", "train.eval_batches=5",
                        "checkpoint.interval=40", "optimizer.lr=3e-3", "optimizer.min_lr=3e-3", "optimizer.warmup_steps=0"]
        let launched = (try? Self.launch(1, settings.flatMap { ["--set", $0] }, run: run)) ?? Launch(status: -1, standardOutput: "", standardError: "not launched")
        return (launched, run)
    }()

    /// metrics.jsonl's lines.
    static func metrics(in run: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    /// The loss falls (the last 10 steps' mean under the first 10's, the eval loss under the
    /// starting model's), every step logs its batch's accuracy, the evaluation before training
    /// is marked eval_on_start, and the trained model ranks at least as many held-out pairs
    /// right as the starting one.
    @Test func trainsAndRanksHeldOutPairs() throws {
        let (launch, run) = Self.trained
        #expect(launch.status == 0, "\(launch.standardError)")
        let rows = try Self.metrics(in: run)
        let steps = rows.filter { $0["loss"] != nil }
        let evaluations = rows.filter { $0["eval_accuracy"] != nil }
        #expect(steps.count == 40 && steps.allSatisfy { $0["accuracy"] is Double && $0["margin"] is Double })
        let start = try #require(evaluations.first), end = try #require(evaluations.last)
        #expect(start["eval_on_start"] as? Bool == true && start["step"] as? Int == 0, "\(start)")
        #expect(evaluations.dropFirst().allSatisfy { $0["eval_on_start"] == nil })
        #expect(end["step"] as? Int == 39 && end["eval_loss"] is Double, "\(end)")
        let losses = steps.compactMap { $0["loss"] as? Double }
        let first = losses.prefix(10).reduce(0, +) / 10, last = losses.suffix(10).reduce(0, +) / 10
        let (startAccuracy, endAccuracy) = (start["eval_accuracy"] as? Double ?? .nan, end["eval_accuracy"] as? Double ?? .nan)
        let (startLoss, endLoss) = (start["eval_loss"] as? Double ?? .nan, end["eval_loss"] as? Double ?? .nan)
        print("reward 40 steps: mean loss of steps 0-9 \(first), of steps 30-39 \(last); eval (40 held-out pairs) "
              + "accuracy \(startAccuracy) → \(endAccuracy), loss \(startLoss) → \(endLoss)")
        #expect(last < first - 0.005, "the training loss did not fall")
        #expect(endLoss < startLoss, "the eval loss did not fall")
        #expect(endAccuracy >= startAccuracy, "the trained model ranks fewer held-out pairs right")
    }

    /// Data parallelism (ZeRO-1), tensor parallelism and pipeline stages give one rank's losses.
    @Test func everyLayoutGivesOneRanksLosses() throws {
        let (reference, expected) = try reward(1, [])
        #expect(reference.status == 0, "\(reference.standardError)")
        #expect(expected.count == 6)
        for layout in ["parallel.zero_stage=1", "parallel.tp=2", "parallel.pp=2"] {
            let (launch, got) = try reward(2, ["--set", layout])
            #expect(launch.status == 0 && got.count == expected.count, "\(layout): \(launch.standardError)")
            let worst = expected.keys.map { abs((got[$0] ?? .nan) - expected[$0]!) / expected[$0]! }.max() ?? .infinity
            print("reward \(layout) np 2: max relative loss difference to one rank \(worst)")
            #expect(worst <= 1e-5, "\(layout)")
        }
    }

    /// The trained checkpoint exported: transformers (tools/check-reward-export.py) loads it as
    /// Qwen2ForSequenceClassification with one label and no missing or new weights, and its
    /// scores of a held-out pair's two conversations and of a short sequence are MeshLM's
    /// (`meshlm eval --logits`, the last position). The config sets no pad_token_id, so
    /// transformers scores an unpadded sequence at its last token; the tool checks a
    /// right-padded batch pools the same scores. Skipped without a python with transformers.
    @Test(.enabled(if: transformersPython != nil,
                   "no python with transformers and torch at /tmp/golden-venv/bin/python or MESHLM_TRANSFORMERS_PYTHON (tools/golden/README.md)"))
    func exportScoresAsTransformers() throws {
        let python = try #require(transformersPython)
        let (launch, run) = Self.trained
        #expect(launch.status == 0, "\(launch.standardError)")
        let work = run.appendingPathComponent("export-check").path
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let exported = work + "/hf"
        let exporting = try Launcher.plain("meshlm", ["ckpt", "export-hf", run.appendingPathComponent("checkpoints").path, "--output", exported])
        #expect(exporting.status == 0, "\(exporting.standardError)")
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exported + "/config.json"))) as? [String: Any])
        #expect(config["architectures"] as? [String] == ["Qwen2ForSequenceClassification"] && config["num_labels"] as? Int == 1, "\(config)")
        #expect(config["pad_token_id"] == nil, "pad_token_id \(config["pad_token_id"] ?? "") would make transformers pool before it")

        let prompt = "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n"
        let texts = [prompt + "7 plus 5 is 12.<|im_end|>\n", prompt + "7 plus 5 is 13.<|im_end|>\n", "Hello"]
        let sequences = texts.map { $0.utf8.map { Int32($0) } }
        var meshlmScores: [Float] = []
        for (index, tokens) in sequences.enumerated() {
            let tokenFile = work + "/tokens-\(index).bin", scores = work + "/scores-\(index).bin"
            try tokens.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: tokenFile))
            let evaluating = try Launcher.plain("meshlm", ["eval", "--checkpoint", run.path, "--tokens", tokenFile, "--dtype", "int32",
                                                           "--seq-len", "\(tokens.count)", "--logits", scores])
            #expect(evaluating.status == 0, "\(evaluating.standardError)")
            let all = try Data(contentsOf: URL(fileURLWithPath: scores)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            #expect(all.count == tokens.count, "scores [T, 1]")
            meshlmScores.append(all.last ?? .nan)
        }
        let output = work + "/transformers-scores.bin"
        let peer = try Launcher.run(python, [repositoryRoot.appendingPathComponent("tools/check-reward-export.py").path, "--model", exported,
                                             "--sequences", sequences.map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";"),
                                             "--output", output], timeout: 300)
        #expect(peer.status == 0, "\(peer.standardError)")
        print(peer.standardOutput + "meshlm eval --logits, last positions: \(meshlmScores)")
        let transformersScores = try Data(contentsOf: URL(fileURLWithPath: output)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        expectClose(transformersScores, meshlmScores, relativeTolerance: 1e-5, "transformers' pooled scores vs meshlm eval --logits")
    }

    /// Each bad input is refused naming the file and line or the key, and what is wrong.
    @Test func badInputIsRefused() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-reward-bad-\(getpid())")
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let noRejected = work.appendingPathComponent("no-rejected.jsonl").path
        let lines = try String(contentsOfFile: Self.data + "/train.jsonl", encoding: .utf8).split(separator: "\n").prefix(2).joined(separator: "\n")
        try Data((lines + "\n" + #"{"prompt": [{"role": "user", "content": "What is 1 + 1?"}], "chosen": [{"role": "assistant", "content": "1 plus 1 is 2."}]}"# + "\n").utf8)
            .write(to: URL(fileURLWithPath: noRejected))
        let empty = work.appendingPathComponent("empty.jsonl").path
        try Data().write(to: URL(fileURLWithPath: empty))
        let kto = Self.data + "/kto.jsonl"
        let dpo = repositoryRoot.appendingPathComponent("configs/dpo/tiny-lora.yaml").path
        let cases: [(command: String, config: String, setting: String, message: String)] = [
            ("reward", Self.config, "data.train=\(noRejected)", "\(noRejected):3: missing field \"rejected\""),
            ("reward", Self.config, "data.train=\(kto)",
             "\(kto):1: a KTO sample (prompt, completion, label), not a pair: preference data gives each prompt a chosen and a rejected answer"),
            ("reward", Self.config, "data.train=\(empty)", "\(empty): holds no preference pairs (the file has no records)"),
            ("dpo", dpo, "dpo.loss_weights=[1,2,3]",
             "--set: key 'dpo.loss_weights': value [1.0, 2.0, 3.0] is invalid: needs one weight per loss_type entry (2)"),
            ("dpo", dpo, "dpo.loss_type=bogus",
             "--set: key 'dpo.loss_type': value 'bogus' is not one of 'sigmoid', 'hinge', 'ipo', 'robust', 'sigmoid_norm', 'sft', 'simpo', 'orpo'"),
        ]
        for item in cases {
            let (launch, _) = try reward(1, ["--set", item.setting], command: item.command, config: item.config)
            #expect(launch.status != 0 && launch.standardError.contains("meshlm: error: " + item.message),
                    "meshlm \(item.command) --set \(item.setting): \(launch.standardError)")
        }
    }
}
