import Checkpoint
import Foundation
import TensorComparison
import Testing

/// Tiny Mixtral, Qwen2-MoE (shared expert) and Qwen3-MoE models made by transformers
/// (Tests/ModelTests/Fixtures/hf-mixtral, hf-qwen2-moe, hf-qwen3-moe, hf-qwen3-moe-fused; tools/golden/make_moe_fixture.py) go through `meshlm ckpt
/// import-hf` and `export-hf` unchanged — from the per-expert layout transformers saves and from
/// the fused layout it holds in memory — and `meshlm eval --logits` and the serving engine (on one
/// and two tensor-parallel ranks) give transformers' logits (`moe_golden.json`).
@Suite(.serialized) struct MixtureOfExpertsHFTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("ModelTests/Fixtures").path

    func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-moe-hf-\(getpid())-\(name)").path
    }

    @Test(arguments: [("hf-mixtral", "mixtral", "hf-mixtral"), ("hf-qwen2-moe", "qwen2_moe", "hf-qwen2-moe"),
                      ("hf-qwen3-moe", "qwen3_moe", "hf-qwen3-moe"),
                      ("hf-qwen3-moe-fused", "qwen3_moe", "hf-qwen3-moe")])
    func importExportAndEvalMatchTransformers(directory: String, model: String, perExpert: String) throws {
        let source = Self.fixtures + "/" + directory
        let work = scratch(directory)
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let golden = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/moe_golden.json")))
        guard let variant = (golden as? [String: Any])?[model] as? [String: Any], let ids = variant["input_ids"] as? [Int],
              let expected = (variant["logits"] as? [Double])?.map(Float.init) else {
            Issue.record("moe_golden.json has no \(model)")
            return
        }
        let imported = work + "/imported", exported = work + "/exported"
        let importing = try Launcher.plain("meshlm", ["ckpt", "import-hf", source, "--output", imported])
        #expect(importing.status == 0, "\(directory): \(importing.standardError)")

        // The training model's forward (forward only) against transformers' logits.
        let logits = try evalLogits(imported, tokens: ids.map(Int32.init), work: work).1
        let comparison = TensorDifference(logits, expected)
        print("\(directory): eval logits vs transformers: \(comparison)")
        #expect(logits.count == expected.count && comparison.relativeDifference <= 1e-5, "\(directory): \(comparison)")

        // The serving engine (one rank, and two tensor-parallel ranks each holding half of every
        // expert): the logits of the first generated token follow the whole prompt.
        let vocabulary = expected.count / ids.count
        let lastRow = Array(expected[(ids.count - 1) * vocabulary..<ids.count * vocabulary])
        for ranks in [1, 2] {
            let engine = try engineLogits(imported, tokens: ids.map(Int32.init), ranks: ranks, dump: work + "/engine-\(ranks).bin").1
            let engineComparison = TensorDifference(engine, lastRow)
            print("\(directory): engine (tp \(ranks)) logits vs transformers: \(engineComparison)")
            #expect(engine.count == vocabulary && engineComparison.relativeDifference <= 1e-5, "\(directory) tp \(ranks): \(engineComparison)")
        }

        // Exported in the per-expert layout transformers saves, bit for bit.
        let exporting = try Launcher.plain("meshlm", ["ckpt", "export-hf", imported, "--output", exported])
        #expect(exporting.status == 0, "\(directory): \(exporting.standardError)")
        let before = try SafetensorsFile(path: Self.fixtures + "/" + perExpert + "/model.safetensors")
        let after = try SafetensorsFile(path: exported + "/model.safetensors")
        #expect(Set(after.entries.map(\.name)) == Set(before.entries.map(\.name)), "\(directory): exported tensor names")
        for entry in after.entries where before.entries.contains(where: { $0.name == entry.name }) {
            #expect(try after.floats(of: entry.name) == before.floats(of: entry.name), "\(directory): \(entry.name) changed")
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: exported + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == model)
        #expect((config?["num_local_experts"] ?? config?["num_experts"]) as? Int == 4)
    }

    /// A fused expert tensor whose shape does not fit config.json is refused by name.
    @Test func aFusedTensorOfTheWrongShapeIsRefused() throws {
        let work = scratch("bad-fused")
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work + "/model", withIntermediateDirectories: true)
        let source = Self.fixtures + "/hf-qwen3-moe-fused"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
        config["moe_intermediate_size"] = 20
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: work + "/model/config.json"))
        try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: work + "/model/model.safetensors")
        let importing = try Launcher.plain("meshlm", ["ckpt", "import-hf", work + "/model", "--output", work + "/out"])
        #expect(importing.status != 0)
        #expect(importing.standardError.contains("model.layers.1.mlp.experts.gate_up_proj has shape [4, 48, 40]"), "\(importing.standardError)")
    }

    /// LoRA fine-tuning (`meshlm sft`, the shipped instruction set, byte tokenizer) of the
    /// imported Qwen2-MoE on its attention projections: one rank and dp 2 give the same losses;
    /// `all-linear`, which would adapt the experts, is refused with the reason.
    @Test func fineTunesWithLoRAOnTheAttention() throws {
        let work = scratch("sft")
        try? FileManager.default.removeItem(atPath: work)
        let base = work + "/base"
        let importing = try Launcher.plain("meshlm", ["ckpt", "import-hf", Self.fixtures + "/hf-qwen2-moe", "--output", base])
        #expect(importing.status == 0, "\(importing.standardError)")
        let model = ["model_type=qwen2_moe", "vocab_size=263", "hidden_size=40", "intermediate_size=56", "moe_intermediate_size=24",
                     "shared_expert_intermediate_size=32", "num_hidden_layers=2", "num_attention_heads=4", "num_key_value_heads=2",
                     "num_local_experts=4", "num_experts_per_tok=2", "max_position_embeddings=256", "bos_token_id=1", "eos_token_id=2"]
        func sft(_ ranks: Int, _ run: String, targets: String) throws -> Launch {
            let data = repositoryRoot.appendingPathComponent("data/sft").path
            var arguments = ["sft", "--config", repositoryRoot.appendingPathComponent("configs/sft/tiny-lora.yaml").path,
                             "--init-from", base, "--tokenizer", "bytes", "--set", "run.dir=\(run)", "--set", "train.steps=5",
                             "--set", "train.log_interval=1", "--set", "train.eval_interval=0", "--set", "train.seq_len=96",
                             "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=0",
                             "--set", "data.train=\(data)/train.jsonl", "--set", "data.eval=\(data)/eval.jsonl",
                             "--set", "lora.target_modules=\(targets)", "--set", "lora.modules_to_save=[]"]
            arguments += model.flatMap { ["--set", "model." + $0] }
            return try Launcher.mpirun(ranks, "meshlm", arguments)
        }
        let one = try sft(1, work + "/one", targets: "[q_proj, k_proj, v_proj, o_proj]")
        #expect(one.status == 0, "\(one.standardError)")
        let two = try sft(2, work + "/two", targets: "[q_proj, k_proj, v_proj, o_proj]")
        #expect(two.status == 0, "\(two.standardError)")
        let expected = try losses(in: URL(fileURLWithPath: work + "/one")), got = try losses(in: URL(fileURLWithPath: work + "/two"))
        #expect(expected.count == 5)
        let worst = expected.reduce(0.0) { max($0, abs((got[$1.key] ?? .nan) - $1.value) / $1.value) }
        print("Qwen2-MoE LoRA SFT, dp 2 against one rank: max relative loss difference \(worst)")
        #expect(worst <= 1e-5)
        let allLinear = try sft(1, work + "/all", targets: "[all-linear]")
        #expect(allLinear.status != 0 && allLinear.standardError.contains("lora.target_modules"), "\(allLinear.standardError)")
    }
}
