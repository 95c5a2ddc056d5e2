import Checkpoint
import Foundation
import Runtime
import TensorComparison
import Testing

/// The python of /tmp/golden-venv (tools/golden/README.md), or of MESHLM_PEFT_PYTHON when set,
/// if it imports peft, transformers and torch; nil otherwise (the parity test then skips,
/// saying why). Probed once per test process.
let peftPython: String? = {
    let python = ProcessInfo.processInfo.environment["MESHLM_PEFT_PYTHON"] ?? "/tmp/golden-venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python),
          let probe = try? Launcher.run(python, ["-c", "import peft, transformers, torch"], timeout: 120), probe.status == 0 else { return nil }
    return python
}()

/// PEFT interop through the `meshlm` commands: a PEFT-saved adapter (the committed fixture)
/// imported, evaluated, merged and verified; a MeshLM LoRA run (sft on the Qwen2 fixture, r 16
/// on every projection, lm_head and embed_tokens trained) exported in PEFT's layout, loaded by
/// the real `peft` with MeshLM's logits, imported back bit for bit, served, merged and trained
/// further.
@Suite(.serialized) struct PeftInteropTests {
    static let fixtures = repositoryRoot.appendingPathComponent("Tests/ModelTests/Fixtures").path

    func scratch(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-peft-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @discardableResult
    func meshlm(_ arguments: [String]) throws -> Launch {
        let launch = try Launcher.plain("meshlm", arguments)
        #expect(launch.status == 0, "meshlm \(arguments.joined(separator: " ")): \(launch.standardError)")
        return launch
    }

    /// `meshlm eval --logits` of `checkpoint` over `tokens`: the logits alone.
    func evalLogits(_ checkpoint: String, tokens: [Int32], work: String) throws -> [Float] {
        try MeshLMTests.evalLogits(checkpoint, tokens: tokens, work: work).1
    }

    /// `trained`'s export imported back (`import-hf --adapter`) into `directory`, every parameter
    /// checked bit for bit against the run's checkpoint.
    func importedBack(_ trained: TrainedRun, into directory: String) throws -> CheckpointReader {
        try meshlm(["ckpt", "import-hf", trained.exported, "--adapter", trained.exported + "/adapter", "--output", directory])
        let original = try CheckpointReader.locate(trained.checkpoints)
        let imported = try CheckpointReader.locate(directory)
        let parameters = original.tensorNames.filter { !$0.hasPrefix("optimizer.") }
        #expect(imported.tensorNames.sorted() == parameters.sorted())
        for name in parameters { expectSameBits(try imported.read(name: name), try original.read(name: name), name) }
        return imported
    }

    /// The loss `meshlm eval` prints for `checkpoint` over `tokens`.
    func evalLoss(_ checkpoint: String, tokens: [Int32], sequenceLength: Int, work: String) throws -> Double {
        let tokenFile = work + "/stream.bin"
        try tokens.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: tokenFile))
        let launch = try meshlm(["eval", "--checkpoint", checkpoint, "--tokens", tokenFile, "--dtype", "int32", "--seq-len", "\(sequenceLength)"])
        let line = try #require(launch.lines.last { $0.hasPrefix("{") })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        return try #require(object["loss"] as? Double)
    }

    /// The committed PEFT adapter: import-hf --adapter, then eval (unmerged) gives PEFT's logits;
    /// merge-lora verifies and evaluates to the adapters' loss. (Its vocabulary of 67 fits no
    /// tokenizer, so `generate` is tested on the Qwen2 run's adapters below.)
    @Test func importedPEFTAdapterEvaluatesAndMerges() throws {
        let work = try scratch("fixture")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let imported = work + "/imported", merged = work + "/merged"
        let importing = try meshlm(["ckpt", "import-hf", Self.fixtures + "/hf-llama-lora/base", "--adapter", Self.fixtures + "/hf-llama-lora/adapter",
                                    "--output", imported])
        #expect(importing.standardOutput.contains("49 tensors from F32") && importing.standardOutput.contains("with a LoRA adapter (r 4, lora_alpha 8.0, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"),
                "\(importing.standardOutput)")

        let golden = try HDF5File.open(Self.fixtures + "/lora_golden.h5")
        let rows = try golden.read(Int32.self, dataset: "lora/input_ids")
        let tokens = Array(rows.prefix(13))
        let vocabulary = try golden.shape(of: "lora/logits")[2]
        let expected = Array(try golden.read(Float.self, dataset: "lora/logits").prefix(13 * vocabulary))
        expectClose(try evalLogits(imported, tokens: tokens, work: work), expected, relativeTolerance: 1e-5, "eval (unmerged) vs PEFT")

        // With OpenBLAS left at 2 threads, as a shell without tools/env.sh has it.
        let merging = try Launcher.plain("meshlm", ["ckpt", "merge-lora", imported, "--output", merged], environment: ["OPENBLAS_NUM_THREADS": "2"])
        #expect(merging.status == 0, "\(merging.standardError)")
        #expect(merging.standardOutput.contains("21 tensors, 14 projections merged (r 4, scaling 2.0"), "\(merging.standardOutput)")
        let verifying = try meshlm(["ckpt", "verify", merged])
        #expect(verifying.standardOutput.contains("OK (step 0, 21 tensors"), "\(verifying.standardOutput)")
        // Both fixture rows as one stream, windows of 13: the loss of the adapters, unmerged and merged.
        let adapterLoss = try evalLoss(imported, tokens: rows, sequenceLength: 13, work: work)
        let mergedLoss = try evalLoss(merged, tokens: rows, sequenceLength: 13, work: work)
        print("merge-lora: eval loss \(mergedLoss) merged vs \(adapterLoss) unmerged, relative difference \(abs(mergedLoss - adapterLoss) / adapterLoss)")
        #expect(abs(mergedLoss - adapterLoss) <= 1e-6 * adapterLoss)

        let again = try Launcher.plain("meshlm", ["ckpt", "merge-lora", merged, "--output", work + "/twice"])
        #expect(again.status == 1 && again.standardError.contains("holds no LoRA adapters to merge (it is a plain checkpoint already)"), "\(again.standardError)")
        let onlyAdapter = try Launcher.plain("meshlm", ["ckpt", "export-hf", merged, "--output", work + "/only", "--adapter-only"])
        #expect(onlyAdapter.status == 1 && onlyAdapter.standardError.contains("it is not a LoRA checkpoint"), "\(onlyAdapter.standardError)")
        let badAdapter = try Launcher.plain("meshlm", ["ckpt", "import-hf", Self.fixtures + "/hf-llama-lora/base", "--adapter", work, "--output", work + "/bad"])
        #expect(badAdapter.status == 1 && badAdapter.standardError.contains("\(work)/adapter_config.json is missing"), "\(badAdapter.standardError)")
    }

    /// A LoRA sft run on the Qwen2 fixture, or the Qwen3 one (tied embeddings, head_dim 12), on
    /// the shipped instruction set with the byte tokenizer, 4 steps.
    static func sft(_ run: String, initFrom: String, family: String = "qwen2", ranks: Int = 1, _ extra: [String] = []) throws -> (Launch, [Int: Double]) {
        let model = ["model.model_type=\(family)", "model.vocab_size=263", "model.hidden_size=40", "model.intermediate_size=72",
                     "model.num_hidden_layers=2", "model.num_attention_heads=4", "model.num_key_value_heads=2",
                     "model.head_dim=\(family == "qwen3" ? 12 : 10)", "model.tie_word_embeddings=\(family == "qwen3")",
                     "model.rope_theta=1000000", "model.rms_norm_eps=1e-6", "model.max_position_embeddings=256"]
        let data = repositoryRoot.appendingPathComponent("data/sft").path
        var arguments = ["sft", "--config", repositoryRoot.appendingPathComponent("configs/sft/tiny-lora.yaml").path, "--init-from", initFrom,
                         "--tokenizer", "bytes", "--set", "run.dir=\(run)", "--set", "train.steps=4", "--set", "train.log_interval=1",
                         "--set", "train.eval_interval=0", "--set", "train.seq_len=96", "--set", "train.global_batch_size=4",
                         "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=4", "--set", "optimizer.warmup_steps=0",
                         "--set", "data.train=\(data)/train.jsonl", "--set", "data.eval=\(data)/eval.jsonl"]
        arguments += model.flatMap { ["--set", $0] } + extra
        let launch = ranks == 1 ? try Launcher.plain("meshlm", arguments, timeout: 300) : try Launcher.mpirun(ranks, "meshlm", arguments, timeout: 300)
        return (launch, (try? losses(in: URL(fileURLWithPath: run))) ?? [:])
    }

    /// Once per test process and family: the fixture imported (`base`), a 4-step LoRA sft run
    /// from it (`run`, its checkpoints in `run/checkpoints`, its losses), and that checkpoint
    /// exported (`exported`, the adapter in `exported/adapter`).
    struct TrainedRun {
        let work: String, base: String, run: String, exported: String
        let launch: Launch, losses: [Int: Double]
        var checkpoints: String { run + "/checkpoints" }
    }

    /// Kept after the process (a static has no teardown) in one directory per family, which the
    /// next test process replaces, so runs do not pile up.
    static func train(_ family: String, label: String? = nil, _ extra: [String] = []) -> TrainedRun {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-peft-trained-\(label ?? family)").path
        try? FileManager.default.removeItem(atPath: work)
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let base = work + "/base", run = work + "/run", exported = work + "/exported"
        _ = try? Launcher.plain("meshlm", ["ckpt", "import-hf", fixtures + "/hf-" + family, "--output", base])
        let (launch, losses) = (try? sft(run, initFrom: base, family: family, extra))
            ?? (Launch(status: -1, standardOutput: "", standardError: "sft did not start"), [:])
        _ = try? Launcher.plain("meshlm", ["ckpt", "export-hf", run + "/checkpoints", "--output", exported])
        return TrainedRun(work: work, base: base, run: run, exported: exported, launch: launch, losses: losses)
    }

    static let trained = train("qwen2")
    /// Tied embeddings: `lm_head` is not a tensor of its own, `embed_tokens` trains for both.
    static let trainedTied = train("qwen3")
    /// DoRA with dropout: the magnitude vectors go out and come back under PEFT's keys.
    static let trainedDoRA = train("qwen2", label: "qwen2-dora", ["--set", "lora.use_dora=true", "--set", "lora.lora_dropout=0.05"])

    /// MeshLM's adapter out in PEFT's layout and back: export-hf writes base + adapter with PEFT's
    /// keys (lm_head and embed_tokens as PEFT saves modules_to_save); import-hf --adapter gives back
    /// every parameter bit for bit; generate serves it (merged at load) with eval's logits, and
    /// its merge-lora checkpoint bit for bit; sft --init-from that checkpoint trains the adapters further
    /// (its first loss is the trained model's, below the base's), and refuses a lora: section
    /// that does not match them.
    @Test func meshLMAdapterRoundTripsAndTrainsFurther() throws {
        let trained = Self.trained
        #expect(trained.launch.status == 0, "\(trained.launch.standardError)")
        let work = try scratch("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let adapter = try SafetensorsFile(path: trained.exported + "/adapter/adapter_model.safetensors")
        // 2 layers × 7 projections × (A, B), then lm_head and embed_tokens whole.
        #expect(adapter.entries.count == 30 && adapter.entries.allSatisfy { $0.name.hasPrefix("base_model.model.") })
        #expect((try? adapter.entry(named: "base_model.model.lm_head.weight")) != nil)
        #expect((try? adapter.entry(named: "base_model.model.model.embed_tokens.weight")) != nil)
        #expect((try? adapter.entry(named: "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"))?.shape == [40, 16])

        let imported = try importedBack(trained, into: work + "/imported")
        #expect(imported.file(named: "tokenizer.json") == nil && imported.file(named: "tokenizer_identity.json") != nil)

        // generate merges the imported adapters at load (one and two tensor-parallel ranks) and
        // gives eval's unmerged logits for the prompt's last position; the merge-lora checkpoint
        // generates them bit for bit. The exported byte tokenizer comes back as the byte tokenizer
        // (import-hf records it instead of copying its tokenizer.json), so no --tokenizer is needed.
        let tokens = "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n".utf8.map { Int32($0) }
        let lastRow = Array(try evalLogits(work + "/imported", tokens: tokens, work: work).suffix(263))
        func generated(_ checkpoint: String, ranks: Int) throws -> [Float] {
            let dump = work + "/engine-\(UUID().uuidString.prefix(6)).bin"
            let arguments = ["generate", "--checkpoint", checkpoint, "--prompt-ids", tokens.map(String.init).joined(separator: ","),
                             "--max-tokens", "1", "--threads", "1", "--dump-logits", dump]
            let launch = ranks == 1 ? try Launcher.plain("meshlm", arguments) : try Launcher.mpirun(ranks, "meshlm", arguments)
            #expect(launch.status == 0, "tp \(ranks): \(launch.standardError)")
            return try floats(atPath: dump)
        }
        let engine = try generated(work + "/imported", ranks: 1)
        expectClose(engine, lastRow, relativeTolerance: 1e-5, "generate (merged at load) vs eval (unmerged)")
        expectClose(try generated(work + "/imported", ranks: 2), lastRow, relativeTolerance: 1e-5, "generate tp 2 vs eval (unmerged)")
        try meshlm(["ckpt", "merge-lora", work + "/imported", "--output", work + "/merged"])
        expectSameBits(try generated(work + "/merged", ranks: 1), engine, "generate: merge-lora checkpoint vs adapters merged at load")

        let (continued, continuedLosses) = try Self.sft(work + "/continued", initFrom: work + "/imported")
        #expect(continued.status == 0, "\(continued.standardError)")
        #expect(!(continued.standardOutput + continued.standardError).contains("new LoRA adapters"))
        let firstStep = try #require(trained.losses.keys.min())
        let (baseFirst, continuedFirst) = (try #require(trained.losses[firstStep]), try #require(continuedLosses[firstStep]))
        print("sft: first loss from the base \(baseFirst), from the imported adapters \(continuedFirst)")
        #expect(continuedFirst < baseFirst)
        // The imported adapters split over two tensor-parallel ranks train as on one.
        let (split, splitLosses) = try Self.sft(work + "/continued-tp2", initFrom: work + "/imported", ranks: 2, ["--set", "parallel.tp=2"])
        #expect(split.status == 0, "\(split.standardError)")
        let worst = continuedLosses.keys.map { abs((splitLosses[$0] ?? .nan) - continuedLosses[$0]!) / continuedLosses[$0]! }.max() ?? .infinity
        print("sft from imported adapters, tp 2: max relative loss difference to one rank \(worst)")
        #expect(continuedLosses.count == 4 && worst <= 1e-6)
        let (mismatch, _) = try Self.sft(work + "/mismatch", initFrom: work + "/imported", family: "qwen2", ["--set", "lora.r=8"])
        #expect(mismatch.status != 0 && mismatch.standardError.contains("lora.r is 8 but the adapters of"), "\(mismatch.standardError)")
    }

    /// The real `peft` (tools/peft-adapter-logits.py) loads MeshLM's exported adapter onto
    /// MeshLM's exported base with no missing or unexpected keys and gives `meshlm eval --logits`
    /// of the LoRA checkpoint: untied (Qwen2: lm_head and embed_tokens saved) and tied (Qwen3:
    /// embed_tokens saved, the head kept on it by ensure_weight_tying). Skipped without a python
    /// with peft.
    @Test(.enabled(if: peftPython != nil,
                   "no python with peft, transformers and torch at /tmp/golden-venv/bin/python or MESHLM_PEFT_PYTHON (tools/golden/README.md)"),
          arguments: ["qwen2", "qwen3", "qwen2-dora"])
    func peftLoadsMeshLMAdapterWithMeshLMLogits(family: String) throws {
        let trained = family == "qwen3" ? Self.trainedTied : family == "qwen2-dora" ? Self.trainedDoRA : Self.trained
        #expect(trained.launch.status == 0, "\(trained.launch.standardError)")
        let python = try #require(peftPython)
        let work = try scratch("parity-" + family)
        if family == "qwen2-dora" {
            let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: trained.exported + "/adapter/adapter_config.json"))) as? [String: Any])
            #expect(config["use_dora"] as? Bool == true && config["lora_dropout"] as? Double == 0.05)
            let adapter = try SafetensorsFile(path: trained.exported + "/adapter/adapter_model.safetensors")
            #expect((try? adapter.entry(named: "base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector"))?.shape == [40])
            _ = try importedBack(trained, into: work + "/imported")
        }
        if family == "qwen3" {
            // PEFT's own form for a tied model that trains its embedding: ensure_weight_tying,
            // the embedding saved under lm_head too; it imports back bit for bit.
            let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: trained.exported + "/adapter/adapter_config.json"))) as? [String: Any])
            #expect(config["modules_to_save"] as? [String] == ["embed_tokens"] && config["ensure_weight_tying"] as? Bool == true)
            let adapter = try SafetensorsFile(path: trained.exported + "/adapter/adapter_model.safetensors")
            expectSameBits(try adapter.floats(of: "base_model.model.lm_head.weight"), try adapter.floats(of: "base_model.model.model.embed_tokens.weight"), "tied head")
            _ = try importedBack(trained, into: work + "/imported")
        }
        defer { try? FileManager.default.removeItem(atPath: work) }
        let tokens = "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n".utf8.map { Int32($0) }
        let meshlmLogits = try evalLogits(trained.checkpoints, tokens: tokens, work: work)
        if family == "qwen2-dora" {
            // merge-lora folds DoRA in as m / ‖W + s·B·A‖ ⊙ (W + s·B·A): the unmerged logits.
            try meshlm(["ckpt", "merge-lora", trained.checkpoints, "--output", work + "/merged"])
            expectClose(try evalLogits(work + "/merged", tokens: tokens, work: work), meshlmLogits, relativeTolerance: 1e-5,
                        "DoRA merged by merge-lora vs unmerged")
        }
        let output = work + "/peft-logits.bin"
        let script = repositoryRoot.appendingPathComponent("tools/peft-adapter-logits.py").path
        let peer = try Launcher.run(python, [script, "--base", trained.exported, "--adapter", trained.exported + "/adapter",
                                             "--tokens", tokens.map(String.init).joined(separator: ","), "--output", output], timeout: 300)
        #expect(peer.status == 0, "\(peer.standardError)")
        print(peer.standardOutput)
        expectClose(try floats(atPath: output), meshlmLogits, relativeTolerance: 1e-5, "\(family): peft on the exported base and adapter vs meshlm eval --logits")
    }

    /// A sequence-classification model with adapters (the score fixture and the committed
    /// adapter, imported) exported: PEFT loads it as `PeftModelForSequenceClassification` with
    /// no missing or unexpected keys and pools `meshlm eval --logits`' last-position scores.
    /// Skipped without a python with peft.
    @Test(.enabled(if: peftPython != nil,
                   "no python with peft, transformers and torch at /tmp/golden-venv/bin/python or MESHLM_PEFT_PYTHON (tools/golden/README.md)"))
    func peftLoadsMeshLMScoreHeadAdapter() throws {
        let python = try #require(peftPython)
        let work = try scratch("score")
        defer { try? FileManager.default.removeItem(atPath: work) }
        try meshlm(["ckpt", "import-hf", Self.fixtures + "/hf-llama-score", "--adapter", Self.fixtures + "/hf-llama-lora/adapter",
                    "--output", work + "/imported"])
        try meshlm(["ckpt", "export-hf", work + "/imported", "--output", work + "/exported"])
        // No id 0, the model's pad_token_id, which transformers' pooling would stop at.
        let tokens: [Int32] = [5, 17, 42, 99, 7, 250, 31, 64, 12, 3]
        let scores = try evalLogits(work + "/imported", tokens: tokens, work: work)
        let output = work + "/peft-scores.bin"
        let peer = try Launcher.run(python, [repositoryRoot.appendingPathComponent("tools/peft-adapter-logits.py").path,
                                             "--base", work + "/exported", "--adapter", work + "/exported/adapter", "--sequence-classification",
                                             "--tokens", tokens.map(String.init).joined(separator: ","), "--output", output], timeout: 300)
        #expect(peer.status == 0, "\(peer.standardError)")
        print(peer.standardOutput)
        expectClose(try floats(atPath: output), Array(scores.suffix(2)), relativeTolerance: 1e-5, "peft (SEQ_CLS) vs meshlm eval --logits, last position")
    }

    /// Adapters the real `peft` makes and saves (tools/peft-make-adapter.py, random A, B and
    /// saved modules): import-hf --adapter onto the same base gives PEFT's logits through
    /// `meshlm eval --logits`. Cases: rsLoRA on a tied model that trains its embedding
    /// (ensure_weight_tying), target_modules as a regular expression with lm_head saved, and a
    /// SEQ_CLS adapter on a sequence classifier (PEFT saves its score head). Skipped without a
    /// python with peft.
    @Test(.enabled(if: peftPython != nil,
                   "no python with peft, transformers and torch at /tmp/golden-venv/bin/python or MESHLM_PEFT_PYTHON (tools/golden/README.md)"),
          arguments: [("qwen3-tied", "hf-qwen3", ["--target-modules", "q_proj,v_proj,down_proj", "--modules-to-save", "embed_tokens",
                                                  "--ensure-weight-tying", "--r", "8", "--alpha", "16", "--rslora"]),
                      ("qwen2-regex", "hf-qwen2", ["--target-modules", #"model\.layers\.\d+\.(self_attn\.q_proj|self_attn\.o_proj|mlp\.up_proj)"#,
                                                   "--regex", "--modules-to-save", "lm_head"]),
                      ("llama-score", "hf-llama-score", ["--target-modules", "k_proj,gate_proj", "--sequence-classification"])])
    func peftMadeAdapterImportsWithPEFTLogits(label: String, base: String, options: [String]) throws {
        let python = try #require(peftPython)
        let work = try scratch("made-" + label)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let tokens: [Int32] = [5, 17, 42, 99, 7, 250, 31, 64, 12, 3, 58, 121]
        let peer = try Launcher.run(python, [repositoryRoot.appendingPathComponent("tools/peft-make-adapter.py").path,
                                             "--base", Self.fixtures + "/" + base, "--output", work + "/adapter",
                                             "--tokens", tokens.map(String.init).joined(separator: ","), "--logits", work + "/peft.bin"] + options,
                                    timeout: 300)
        #expect(peer.status == 0, "\(peer.standardError)")
        let importing = try meshlm(["ckpt", "import-hf", Self.fixtures + "/" + base, "--adapter", work + "/adapter", "--output", work + "/imported"])
        print("\(label): \(importing.standardOutput)")
        let expected = try floats(atPath: work + "/peft.bin")
        let logits = try evalLogits(work + "/imported", tokens: tokens, work: work)
        // A sequence classifier's PEFT output is the last position's scores.
        expectClose(Array(logits.suffix(expected.count)), expected, relativeTolerance: 1e-5, "\(label): meshlm eval --logits vs peft")
        if !options.contains("--sequence-classification") { #expect(logits.count == expected.count) }
    }
}
