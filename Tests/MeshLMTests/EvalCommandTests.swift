import Foundation
import Testing

/// `meshlm eval` over a shard directory and token files: windows of --seq-len, data parallel
/// under mpirun with the same loss on 1 and 2 ranks, and bad input named in one error line.
@Suite(.serialized) struct EvalCommandTests {
    static let smallModel = ["--set", "model.vocab_size=263", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=72",
                             "--set", "model.num_hidden_layers=2", "--set", "model.num_attention_heads=4",
                             "--set", "model.num_key_value_heads=2", "--set", "model.max_position_embeddings=128"]

    /// A checkpoint of the small model after 2 steps on the shipped eval corpus, made once.
    static let run: String = {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-eval-\(getpid())").path
        let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
        _ = try? Launcher.plain("meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run)",
            "--set", "train.steps=2", "--set", "train.eval_interval=0", "--set", "train.seq_len=64",
            "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=2"] + smallModel)
        return run
    }()

    static func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-eval-\(getpid())-\(name)").path
    }

    /// Runs `meshlm eval` on `ranks` ranks and returns its JSON line.
    static func evaluate(ranks: Int, _ arguments: [String], checkpoint: String = run + "/checkpoints") throws -> [String: Any] {
        let launch = try Launcher.mpirun(ranks, "meshlm", ["eval", "--checkpoint", checkpoint, "--threads", "1"] + arguments)
        try #require(launch.status == 0, "\(launch.standardError)")
        let line = try #require(launch.lines.last, "no output: \(launch.standardError)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
    }

    /// Writes `ids` as a headerless uint16 .bin.
    static func writeTokens(_ ids: [UInt16], to path: String) throws {
        try ids.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: path))
    }

    @Test func shardDirectoryGivesTheSameLossOnOneAndTwoRanks() throws {
        let arguments = ["--tokens", testShards.path, "--seq-len", "64", "--max-windows", "9"]
        let one = try Self.evaluate(ranks: 1, arguments)
        // The run directory stands for its checkpoints directory.
        let two = try Self.evaluate(ranks: 2, arguments, checkpoint: Self.run)
        let batched = try Self.evaluate(ranks: 2, arguments + ["--batch-size", "3"])
        let loss = try #require(one["loss"] as? Double)
        print("eval 9 windows of 64: loss \(loss) on 1 rank, \(two["loss"] ?? "-") on 2, \(batched["loss"] ?? "-") batched by 3")
        #expect(one["windows"] as? Int == 9 && one["tokens"] as? Int == 9 * 64 && one["seq_len"] as? Int == 64)
        #expect(loss > 1 && loss < 7)
        #expect(abs((one["perplexity"] as? Double ?? 0) - exp(loss)) <= 1e-6 * exp(loss))
        for other in [two, batched] {
            #expect(other["windows"] as? Int == 9 && other["tokens"] as? Int == 9 * 64)
            #expect(abs((other["loss"] as? Double ?? 0) - loss) <= 1e-6 * loss, "\(other)")
        }
        #expect(two["loss"] as? Double == loss, "one window per slot, summed in window order: the same digits")
    }

    /// Every token after the first is predicted once: 3 windows of 4 positions over 10 tokens
    /// (9 targets: 4, 4, 1), on 1 rank and on 3 (one window each); a file that fits one window
    /// gives the loss of the whole sequence, as --logits' single-window mode does.
    @Test func everyTokenIsPredictedOnceOnAnyRankCount() throws {
        let path = Self.scratch("ten.bin")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.writeTokens([72, 101, 108, 108, 111, 44, 32, 119, 111, 114], to: path)
        let one = try Self.evaluate(ranks: 1, ["--tokens", path, "--seq-len", "4"])
        let three = try Self.evaluate(ranks: 3, ["--tokens", path, "--seq-len", "4"])
        #expect(one["windows"] as? Int == 3 && one["tokens"] as? Int == 9)
        #expect(three["windows"] as? Int == 3 && three["tokens"] as? Int == 9 && three["loss"] as? Double == one["loss"] as? Double)
        let logits = Self.scratch("ten.f32")
        defer { try? FileManager.default.removeItem(atPath: logits) }
        let whole = try Self.evaluate(ranks: 1, ["--tokens", path, "--seq-len", "16", "--logits", logits])
        #expect(whole["windows"] as? Int == 1 && whole["tokens"] as? Int == 9)
        #expect(FileManager.default.contents(atPath: logits)?.count == 10 * 263 * 4)
    }

    @Test func badInputIsNamed() throws {
        let checkpoint = Self.run + "/checkpoints"
        let outside = Self.scratch("outside.bin"), single = Self.scratch("single.bin")
        defer { for path in [outside, single] { try? FileManager.default.removeItem(atPath: path) } }
        try Self.writeTokens([1, 2, 3, 300, 4], to: outside)
        try Self.writeTokens([1], to: single)
        let missing = Self.scratch("missing.bin")
        for (arguments, message) in [
            (["--tokens", missing], "\(missing): no such file or directory"),
            (["--tokens", testShards.path, "--seq-len", "1"], "--seq-len must be at least 2, got 1"),
            (["--tokens", testShards.path, "--seq-len", "129"],
             "--seq-len 129 exceeds the model's max_position_embeddings 128 (\(checkpoint)/step_00000002)"),
            (["--tokens", outside, "--seq-len", "2"], "\(outside): token 3 is id 300, outside the model's vocabulary of 263 ids"),
            (["--tokens", single], "\(single): 1 token; eval needs at least 2 (one to read, one to predict)"),
            (["--tokens", testShards.path, "--seq-len", "8", "--max-tokens", "20", "--logits", Self.scratch("no.f32")],
             "--logits needs the tokens to fit one window on one rank: 20 tokens, --seq-len 8, 2 rank(s) (use --max-tokens)"),
        ] {
            let launch = try Launcher.mpirun(2, "meshlm", ["eval", "--checkpoint", checkpoint] + arguments)
            #expect(launch.status != 0)
            // One line, from the rank that saw it ("meshlm: error (rank 1): …" when not rank 0).
            let errors = launch.standardError.split(separator: "\n").filter { $0.hasPrefix("meshlm: error") }
            #expect(errors.count == 1 && errors[0].hasSuffix(": \(message)"), "\(launch.standardError)")
            #expect(launch.standardOutput.isEmpty, "\(launch.standardOutput)")
        }
    }
}
