import Checkpoint
import Foundation
import TensorComparison
import Testing

/// `meshlm sft` end to end under mpirun: the shipped instruction set (data/sft) on a small Qwen2
/// model imported from transformers (Tests/ModelTests/Fixtures/hf-qwen2) with the byte
/// tokenizer, LoRA or full fine-tuning; data-parallel and tensor-parallel layouts give one
/// rank's losses; bad setups are refused with the reason.
@Suite(.serialized) struct SFTCommandTests {
    let config = repositoryRoot.appendingPathComponent("configs/sft/tiny-lora.yaml").path

    /// The imported base model, once per test process.
    static let base: String = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-base-\(getpid())").path
        _ = try? Launcher.plain("meshlm", ["ckpt", "import-hf", repositoryRoot.appendingPathComponent("Tests/ModelTests/Fixtures/hf-qwen2").path,
                                           "--output", directory])
        return directory
    }()

    /// The model section of the imported base.
    static let qwenModel = ["model.model_type=qwen2", "model.vocab_size=263", "model.hidden_size=40", "model.intermediate_size=72",
                            "model.num_hidden_layers=2", "model.num_attention_heads=4", "model.num_key_value_heads=2", "model.head_dim=10",
                            "model.rope_theta=1000000", "model.rms_norm_eps=1e-6", "model.max_position_embeddings=256"]

    /// Runs `meshlm sft` in `run` (kept), or in a fresh directory removed afterwards.
    func sft(_ ranks: Int, _ extra: [String], run given: URL? = nil) throws -> (Launch, [Int: Double]) {
        let run = given ?? FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-\(getpid())-\(UUID().uuidString.prefix(6))")
        defer { if given == nil { try? FileManager.default.removeItem(at: run) } }
        var arguments = ["sft", "--config", config, "--init-from", Self.base, "--tokenizer", "bytes",
                         "--set", "run.dir=\(run.path)", "--set", "train.steps=6", "--set", "train.log_interval=1",
                         "--set", "train.eval_interval=0", "--set", "train.seq_len=96", "--set", "train.global_batch_size=8",
                         "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=0"]
        let data = repositoryRoot.appendingPathComponent("data/sft").path
        arguments += ["--set", "data.train=\(data)/train.jsonl", "--set", "data.eval=\(data)/eval.jsonl"]
        arguments += Self.qwenModel.flatMap { ["--set", $0] } + extra
        let launch = try Launcher.mpirun(ranks, "meshlm", arguments)
        return (launch, (try? losses(in: run)) ?? [:])
    }

    @Test func everyLayoutGivesOneRanksLosses() throws {
        let (reference, expected) = try sft(1, [])
        #expect(reference.status == 0, "\(reference.standardError)")
        #expect(reference.standardError.contains("supervised tokens, packed into") || reference.standardOutput.contains("supervised tokens, packed into"))
        #expect(expected.count == 6)
        for (ranks, layout) in [(2, ["parallel.zero_stage=2"]), (2, ["parallel.tp=2"])] {
            let (launch, got) = try sft(ranks, layout.flatMap { ["--set", $0] })
            #expect(launch.status == 0, "\(layout): \(launch.standardError)")
            let worst = expected.keys.map { abs((got[$0] ?? .nan) - expected[$0]!) / expected[$0]! }.max() ?? .infinity
            print("sft LoRA \(layout) np \(ranks): max relative loss difference to one rank \(worst)")
            #expect(worst <= 1e-6, "\(layout)")
        }
    }

    /// Stopped at step 3 (LoRA adapters and their optimizer state saved) and resumed on the same
    /// mesh, a run continues bitwise as if uninterrupted.
    @Test func resumesBitwise() throws {
        let (whole, expected) = try sft(2, [])
        #expect(whole.status == 0, "\(whole.standardError)")
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-resume-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let first = try sft(2, ["--set", "train.stop_at_step=3", "--set", "checkpoint.interval=3"], run: run)
        #expect(first.0.status == 0, "\(first.0.standardError)")
        let second = try sft(2, ["--resume"], run: run)
        #expect(second.0.status == 0, "\(second.0.standardError)")
        #expect(second.0.standardOutput.contains("resuming at step 3"), "\(second.0.standardOutput)")
        #expect(second.1 == expected, "the resumed run differs from the uninterrupted one")
    }

    /// DoRA with LoRA dropout on the imported base: the first loss is plain LoRA's (B starts at
    /// zero and each magnitude at the row norms of the loaded W, so both start as the base), and
    /// a run stopped after step 3 and resumed gives the uninterrupted run's losses bit for bit
    /// (the dropout masks are keyed by the step and the global rows, not drawn from a running
    /// generator). A constant schedule, so the stopped run's 3 steps are the whole run's.
    @Test func doraWithDropoutStartsAtTheBaseAndResumesBitwise() throws {
        let constant = ["--set", "optimizer.schedule=constant", "--set", "checkpoint.interval=3"]
        let variant = constant + ["--set", "lora.use_dora=true", "--set", "lora.lora_dropout=0.1"]
        let (plainLaunch, plain) = try sft(1, constant)
        let (wholeLaunch, whole) = try sft(1, variant)
        #expect(plainLaunch.status == 0 && wholeLaunch.status == 0, "\(plainLaunch.standardError)\(wholeLaunch.standardError)")
        let first = try #require(whole.keys.min())
        let start = abs((whole[first] ?? .nan) - (plain[first] ?? .nan)) / (plain[first] ?? .nan)
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-resume-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let (stopped, _) = try sft(1, variant + ["--set", "train.steps=3"], run: run)
        let (resumed, continued) = try sft(1, variant + ["--resume"], run: run)
        #expect(stopped.status == 0 && resumed.status == 0, "\(stopped.standardError)\(resumed.standardError)")
        let later = whole.keys.sorted().suffix(3)
        let same = later.allSatisfy { continued[$0]?.bitPattern == whole[$0]?.bitPattern }
        print("sft DoRA + dropout: first loss \(whole[first] ?? .nan) vs plain LoRA \(plain[first] ?? .nan) (rel \(start)); "
              + "resumed steps \(Array(later)) \(later.map { continued[$0] ?? .nan }) vs \(later.map { whole[$0] ?? .nan })")
        #expect(start <= 1e-5)
        #expect(later.count == 3 && same, "resumed losses differ")
    }

    /// QLoRA (`lora.quantize_base: nf4`): data parallelism (ZeRO-2) and pipeline stages give one
    /// rank's losses (every replica and stage quantizes the same whole tensors to the same bits);
    /// tensor parallelism quantizes
    /// each rank's slice in its own blocks, so its losses are one rank's within the quantization
    /// error; the checkpoint holds no layer projection and names its base; a run stopped after
    /// step 3 and resumed (the base reloaded and requantized) gives the uninterrupted losses bit
    /// for bit; the losses differ from plain LoRA's (the base is quantized).
    @Test func qloraMatchesOneRankAndResumesBitwise() throws {
        let qlora = ["--set", "lora.quantize_base=nf4", "--set", "optimizer.schedule=constant", "--set", "checkpoint.interval=3"]
        let (plainLaunch, plain) = try sft(1, ["--set", "optimizer.schedule=constant"])
        let (reference, expected) = try sft(1, qlora)
        #expect(plainLaunch.status == 0 && reference.status == 0, "\(plainLaunch.standardError)\(reference.standardError)")
        #expect((reference.standardError + reference.standardOutput).contains("QLoRA: 14 matrices"), "\(reference.standardError)")
        #expect(expected.count == 6)
        let first = try #require(expected.keys.min())
        #expect(abs((expected[first] ?? .nan) - (plain[first] ?? .nan)) > 1e-6, "QLoRA's first loss should not be LoRA's")
        for (ranks, layout, tolerance) in [(2, ["parallel.zero_stage=2"], 1e-6), (2, ["parallel.pp=2"], 1e-6), (2, ["parallel.tp=2"], 2e-2)] {
            let (launch, got) = try sft(ranks, qlora + layout.flatMap { ["--set", $0] })
            #expect(launch.status == 0, "\(layout): \(launch.standardError)")
            let worst = expected.keys.map { abs((got[$0] ?? .nan) - expected[$0]!) / expected[$0]! }.max() ?? .infinity
            print("sft QLoRA \(layout) np \(ranks): max relative loss difference to one rank \(worst)")
            #expect(worst <= tolerance, "\(layout)")
        }
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-qlora-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let (stopped, _) = try sft(1, qlora + ["--set", "train.steps=3"], run: run)
        #expect(stopped.status == 0, "\(stopped.standardError)")
        let step = run.appendingPathComponent("checkpoints/step_00000003")
        let metadata = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: step.appendingPathComponent("metadata.json"))) as? [String: Any])
        #expect(metadata["quantized_base"] as? String == "nf4")
        #expect((metadata["base_checkpoint"] as? String)?.hasPrefix(Self.base) == true, "\(metadata)")
        let inspect = try Launcher.plain("meshlm", ["ckpt", "inspect", step.path])
        #expect(inspect.standardOutput.contains("lora_A") && !inspect.standardOutput.contains("q_proj.weight "), "\(inspect.standardOutput)")
        // Serving reads the base projections from base_checkpoint as dequant(NF4(W)) and merges
        // the adapters in: the first generated token's logits differ from the base's.
        var served: [[Float]] = []
        for checkpoint in [step.path, Self.base] {
            let dump = run.appendingPathComponent("logits-\(served.count).bin").path
            let generating = try Launcher.plain("meshlm", ["generate", "--checkpoint", checkpoint, "--prompt-ids", "5,6,7,8",
                                                           "--max-tokens", "1", "--threads", "1", "--dump-logits", dump])
            #expect(generating.status == 0, "generate \(checkpoint): \(generating.standardError)")
            let data = (try? Data(contentsOf: URL(fileURLWithPath: dump))) ?? Data()
            served.append(data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
        }
        #expect(served[0].count == 263 && served[1].count == 263)
        #expect(zip(served[0], served[1]).contains { abs($0 - $1) > 1e-4 }, "the QLoRA checkpoint should serve its adapters")
        // merge-lora into dequant(NF4(W)) serves exactly what the QLoRA checkpoint serves (the same
        // merge, from the same base); into the original W, something else.
        for choice in ["dequantized", "original"] {
            let merged = run.appendingPathComponent("merged-\(choice)").path
            let merging = try Launcher.plain("meshlm", ["ckpt", "merge-lora", step.path, "--output", merged, "--qlora-base", choice])
            #expect(merging.status == 0 && merging.standardOutput.contains("QLoRA: merged into"), "\(merging.standardOutput)\(merging.standardError)")
            let dump = run.appendingPathComponent("logits-merged-\(choice).bin").path
            let generating = try Launcher.plain("meshlm", ["generate", "--checkpoint", merged, "--prompt-ids", "5,6,7,8",
                                                           "--max-tokens", "1", "--threads", "1", "--dump-logits", dump])
            #expect(generating.status == 0, "generate \(merged): \(generating.standardError)")
            let logits = ((try? Data(contentsOf: URL(fileURLWithPath: dump))) ?? Data()).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let same = logits.count == served[0].count && zip(logits, served[0]).allSatisfy { $0.bitPattern == $1.bitPattern }
            #expect(same == (choice == "dequantized"), "\(choice): merged logits \(same ? "equal" : "differ from") the QLoRA checkpoint's")
        }
        // eval runs the QLoRA checkpoint over dequant(NF4(W)) of its base, adapters unmerged: the
        // merged checkpoint's logits; export-hf writes the base's original W.
        let tokenFile = run.appendingPathComponent("tokens.bin")
        try [Int32]([5, 6, 7, 8, 9, 10]).withUnsafeBufferPointer { Data(buffer: $0) }.write(to: tokenFile)
        var evaluated: [[Float]] = []
        for checkpoint in [step.path, run.appendingPathComponent("merged-dequantized").path] {
            let logits = run.appendingPathComponent("eval-\(evaluated.count).bin").path
            let evaluating = try Launcher.plain("meshlm", ["eval", "--checkpoint", checkpoint, "--tokens", tokenFile.path, "--dtype", "int32",
                                                           "--seq-len", "6", "--logits", logits])
            #expect(evaluating.status == 0, "eval \(checkpoint): \(evaluating.standardError)")
            evaluated.append(((try? Data(contentsOf: URL(fileURLWithPath: logits))) ?? Data()).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
        }
        expectClose(evaluated[0], evaluated[1], relativeTolerance: 1e-5, "eval of the QLoRA checkpoint vs its dequantized merge")
        let exported = run.appendingPathComponent("exported").path
        let exporting = try Launcher.plain("meshlm", ["ckpt", "export-hf", step.path, "--output", exported])
        #expect(exporting.status == 0, "\(exporting.standardError)")
        let hf = try SafetensorsFile(path: exported + "/model.safetensors")
        let baseReader = try CheckpointReader.locate(Self.base)
        expectSameBits(try hf.floats(of: "model.layers.0.self_attn.q_proj.weight"), try baseReader.read(name: "model.layers.0.self_attn.q_proj.weight"),
                       "export-hf of a QLoRA checkpoint: the base's original W")
        let (resumed, continued) = try sft(1, qlora + ["--resume"], run: run)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        let later = expected.keys.sorted().suffix(3)
        print("sft QLoRA resumed steps \(Array(later)) \(later.map { continued[$0] ?? .nan }) vs \(later.map { expected[$0] ?? .nan })")
        #expect(later.count == 3 && later.allSatisfy { continued[$0]?.bitPattern == expected[$0]?.bitPattern }, "resumed losses differ")
    }

    /// QLoRA's refusals name the key and the remedy.
    @Test func qloraRefusals() throws {
        let dora = try sft(1, ["--set", "lora.quantize_base=nf4", "--set", "lora.use_dora=true"])
        #expect(dora.0.status != 0 && dora.0.standardError.contains("lora.quantize_base") && dora.0.standardError.contains("use_dora"),
                "\(dora.0.standardError)")
        let zero3 = try sft(2, ["--set", "lora.quantize_base=nf4", "--set", "parallel.zero_stage=3"])
        #expect(zero3.0.status != 0 && zero3.0.standardError.contains("ZeRO-3"), "\(zero3.0.standardError)")
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-qlora-pretrain-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let pretrain = try Launcher.plain("meshlm", ["pretrain", "--config", repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path,
                                                     "--set", "run.dir=\(run.path)", "--set", "train.steps=1", "--set", "data.train=\(testShards.path)",
                                                     "--set", "data.eval=\(testShards.path)", "--set", "lora.r=4",
                                                     "--set", "lora.quantize_base=nf4"])
        #expect(pretrain.status != 0 && pretrain.standardError.contains("quantizes a pretrained base: start with --init-from"),
                "\(pretrain.standardError)")
        let format = try sft(1, ["--set", "lora.quantize_base=nf5"])
        #expect(format.0.status != 0 && format.0.standardError.contains("quantize_base nf5: must be nf4"), "\(format.0.standardError)")
    }

    @Test func badSetupsAreRefused() throws {
        let noInit = try Launcher.plain("meshlm", ["sft", "--config", repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path])
        #expect(noInit.status != 0 && noInit.standardError.contains("an sft: section is required"), "\(noInit.standardError)")
        let badData = try sft(1, ["--set", "data.train=\(repositoryRoot.appendingPathComponent("README.md").path)"])
        #expect(badData.0.status != 0 && badData.0.standardError.contains("SFT data is JSONL"), "\(badData.0.standardError)")
        let noTokenizer = try Launcher.plain("meshlm", ["sft", "--config", config, "--init-from", Self.base])
        #expect(noTokenizer.status != 0 && noTokenizer.standardError.contains("has no tokenizer.json"), "\(noTokenizer.standardError)")
    }

    /// `meshlm data sft-tokenize` with the run's config and base (train.seq_len 96, as `sft`).
    func sftTokenize(_ ranks: Int, _ input: String, _ output: String, _ extra: [String] = []) throws -> Launch {
        let arguments = ["data", "sft-tokenize", "--config", config, "--init-from", Self.base, "--tokenizer", "bytes",
                         "--set", "train.seq_len=96", "--input", input, "--output", output, "--shard-tokens", "10000"]
        return try Launcher.mpirun(ranks, "meshlm", arguments + Self.qwenModel.flatMap { ["--set", $0] } + extra)
    }

    /// The shipped training set tokenized on 1 and 2 ranks gives the same bytes, and sft from
    /// that directory trains with the losses of sft from the JSONL; a run whose settings differ
    /// from the directory's, and bad records, are refused.
    @Test func tokenizedSamplesTrainAsTheirJSONL() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-shards-\(getpid())-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let train = repositoryRoot.appendingPathComponent("data/sft/train.jsonl").path
        var contents: [[Data]] = []
        for ranks in [1, 2] {
            let output = directory.appendingPathComponent("shards-\(ranks)").path
            let launch = try sftTokenize(ranks, train, output)
            #expect(launch.status == 0, "\(launch.standardError)")
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).sorted()
            #expect(names.first == "manifest.json" && names.count > 3, "\(names)")
            contents.append(names.map { FileManager.default.contents(atPath: output + "/" + $0) ?? Data() })
            if ranks == 1 { print("sft-tokenize: \((launch.standardError + launch.standardOutput).split(separator: "\n").filter { $0.contains("wrote") })") }
        }
        #expect(contents[0] == contents[1], "the sample shards differ between 1 and 2 ranks")
        let shards = directory.appendingPathComponent("shards-2").path

        let (fromJSONL, expected) = try sft(1, [])
        let (fromShards, got) = try sft(1, ["--set", "data.train=\(shards)"])
        #expect(fromJSONL.status == 0 && fromShards.status == 0, "\(fromJSONL.standardError)\n\(fromShards.standardError)")
        #expect(expected.count == 6 && got == expected, "losses from the shards \(got.sorted { $0.key < $1.key }) vs the JSONL \(expected.sorted { $0.key < $1.key })")

        let masked = try sft(1, ["--set", "data.train=\(shards)", "--set", "sft.mask_history=true"]).0
        #expect(masked.status != 0 && masked.standardError.contains("\(shards) was tokenized with sft.mask_history false, but this run has true"), "\(masked.standardError)")
        let longer = try sft(1, ["--set", "data.train=\(shards)", "--set", "train.seq_len=128"]).0
        #expect(longer.status != 0 && longer.standardError.contains("\(shards) was tokenized with train.seq_len 96, but this run has 128"), "\(longer.standardError)")

        let bad = directory.appendingPathComponent("bad.jsonl").path
        try Data((#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}"# + "\n"
                  + #"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": " "}]}"# + "\n").utf8)
            .write(to: URL(fileURLWithPath: bad))
        let badOutput = directory.appendingPathComponent("bad-shards").path
        let refused = try sftTokenize(2, bad, badOutput)
        #expect(refused.status != 0 && refused.standardError.contains("\(bad):2: message 1: empty assistant turn (nothing to learn from)"), "\(refused.standardError)")
        #expect(!FileManager.default.fileExists(atPath: badOutput), "a failed run leaves no output")
        let again = try sftTokenize(1, train, shards)
        #expect(again.status != 0 && again.standardError.contains("\(shards): output directory exists and is not empty (choose another, or pass --overwrite to replace its shards)"), "\(again.standardError)")
    }
}
