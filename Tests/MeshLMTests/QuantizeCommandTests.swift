import Foundation
import Testing

/// `meshlm ckpt quantize` end to end with the built binary: the quantized checkpoint verifies
/// and evaluates within 1 % (q8_0) and 5 % (q4_0) of its f32 source's loss; training from it
/// and a second quantization are refused in one error line each.
@Suite(.serialized) struct QuantizeCommandTests {
    /// A model whose widths are whole blocks of 32 (hidden 64, 2 heads of 32, MLP 96).
    static let model = ["--set", "model.vocab_size=263", "--set", "model.hidden_size=64", "--set", "model.intermediate_size=96",
                        "--set", "model.num_hidden_layers=2", "--set", "model.num_attention_heads=2",
                        "--set", "model.num_key_value_heads=1", "--set", "model.max_position_embeddings=128"]

    static func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-quantize-\(getpid())-\(name)").path
    }

    @Test func quantizeVerifyEvaluateAndRefuseTraining() throws {
        let run = Self.scratch("run")
        defer { for name in ["run", "q8", "q4", "again", "train"] { try? FileManager.default.removeItem(atPath: Self.scratch(name)) } }
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        let pretrain = try Launcher.plain("meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run)",
            "--set", "train.steps=4", "--set", "train.eval_interval=0", "--set", "train.seq_len=64",
            "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=4"] + Self.model)
        try #require(pretrain.status == 0, "\(pretrain.standardError)")

        var losses: [String: Double] = [:]
        for (format, name) in [("q8_0", "q8"), ("q4_0", "q4")] {
            let quantize = try Launcher.plain("meshlm", ["ckpt", "quantize", "--checkpoint", run, "--output", Self.scratch(name),
                                                         "--format", format])
            try #require(quantize.status == 0, "\(quantize.standardError)")
            #expect(quantize.standardOutput.contains(": 14 projections in \(format), the head in q8_0, 6 in f32;"), "\(quantize.standardOutput)")
            let verify = try Launcher.plain("meshlm", ["ckpt", "verify", Self.scratch(name)])
            #expect(verify.status == 0, "\(verify.standardError)")
        }
        for (name, checkpoint) in [("f32", run), ("q8_0", Self.scratch("q8")), ("q4_0", Self.scratch("q4"))] {
            let eval = try Launcher.plain("meshlm", ["eval", "--checkpoint", checkpoint, "--tokens", testShards.path,
                                                     "--seq-len", "64", "--max-windows", "6", "--threads", "1"])
            try #require(eval.status == 0, "\(eval.standardError)")
            let line = try #require(eval.lines.last)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            losses[name] = try #require(object["loss"] as? Double)
        }
        print("eval loss: \(losses)")
        let f32 = try #require(losses["f32"])
        #expect(abs(try #require(losses["q8_0"]) - f32) <= 0.01 * f32)
        #expect(abs(try #require(losses["q4_0"]) - f32) <= 0.05 * f32)

        let step = Self.scratch("q8") + "/step_00000004"
        let train = try Launcher.plain("meshlm", ["pretrain", "--config", config, "--init-from", Self.scratch("q8"),
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(Self.scratch("train"))",
            "--set", "train.steps=2"] + Self.model)
        #expect(train.status != 0)
        #expect(train.standardError.contains("meshlm: error: checkpoint \(step) holds tensor model.layers.0.self_attn.q_proj.weight quantized as q8_0 (a checkpoint for inference, written by `meshlm ckpt quantize`); this command needs f32 weights: give it the f32 checkpoint the quantized one was made from"),
                "\(train.standardError)")

        let again = try Launcher.plain("meshlm", ["ckpt", "quantize", "--checkpoint", Self.scratch("q8"), "--output", Self.scratch("again"),
                                                  "--format", "q4_0"])
        #expect(again.status == 1)
        #expect(again.standardError == "meshlm: error: checkpoint \(step) is already quantized (tensor lm_head.weight is q8_0); quantize the f32 checkpoint it was made from\n")
    }
}
