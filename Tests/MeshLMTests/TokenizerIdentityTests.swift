import Foundation
import Testing

/// Every place where ids meet a tokenizer or a model compares tokenizer identities and refuses
/// a mismatch naming both (docs/checkpoints.md, "Tokenizer identity"): `data tokenize` leaves
/// the tokenizer beside its shards, pretraining carries it into its checkpoints without a flag,
/// and generate, eval and a resumed pretrain refuse another tokenizer's ids or file. Before,
/// each of these silently used the byte tokenizer or read the ids as they were.
@Suite(.serialized) struct TokenizerIdentityTests {
    static let corpus = repositoryRoot.appendingPathComponent("data/corpus/eval.jsonl.zst").path
    let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path

    @Test func idsAndTokenizersThatDoNotBelongTogetherAreRefused() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-identity-\(getpid())")
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let path = { (name: String) in work.appendingPathComponent(name).path }

        // Two BPE tokenizers of the same corpus (other vocabularies) and shards of each kind.
        for (name, size) in [("a.json", "300"), ("b.json", "290")] {
            let trained = try Launcher.plain("meshlm", ["tokenizer", "train", "--input", Self.corpus, "--vocab-size", size, "--output", path(name)])
            try #require(trained.status == 0, "\(trained.standardError)")
        }
        let tokenized = try Launcher.plain("meshlm", ["data", "tokenize", "--input", Self.corpus, "--tokenizer", path("a.json"),
                                                      "--output", path("shards-a")])
        try #require(tokenized.status == 0, "\(tokenized.standardError)")
        #expect(FileManager.default.contents(atPath: path("shards-a/tokenizer.json")) == FileManager.default.contents(atPath: path("a.json")),
                "data tokenize leaves its tokenizer beside the shards")
        let bytes = try Launcher.plain("meshlm", ["data", "shard-text", "--input", Self.corpus, "--output", path("shards-bytes")])
        try #require(bytes.status == 0, "\(bytes.standardError)")

        // Pretraining on tokenizer A's shards, with no tokenizer flag, saves A with its checkpoints.
        let run = path("run")
        func pretrain(_ data: String, steps: Int) throws -> Launch {
            try Launcher.plain("meshlm", ["pretrain", "--config", config, "--threads", "1",
                "--set", "data.train=\(data)", "--set", "data.eval=\(data)", "--set", "run.dir=\(run)",
                "--set", "train.steps=\(steps)", "--set", "train.eval_interval=0", "--set", "train.seq_len=32",
                "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=2",
                "--set", "model.vocab_size=320", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64",
                "--set", "model.num_hidden_layers=1", "--set", "model.num_attention_heads=4", "--set", "model.num_key_value_heads=2"])
        }
        let trained = try pretrain(path("shards-a"), steps: 2)
        try #require(trained.status == 0, "\(trained.standardError)")
        let step = run + "/checkpoints/step_00000002"
        #expect(FileManager.default.contents(atPath: step + "/tokenizer.json") == FileManager.default.contents(atPath: path("a.json")))

        func generate(_ extra: [String]) throws -> Launch {
            try Launcher.plain("meshlm", ["generate", "--checkpoint", run, "--threads", "1", "--prompt", "The", "--max-tokens", "2"] + extra)
        }
        #expect(try generate([]).status == 0)
        #expect(try generate(["--tokenizer", path("a.json")]).status == 0)
        let other = try generate(["--tokenizer", path("b.json")])
        #expect(other.status != 0)
        #expect(other.standardError.contains("--tokenizer \(path("b.json")) is tokenizer b.json (sha256:")
                && other.standardError.contains("but \(step) was trained with tokenizer a.json (sha256:"), "\(other.standardError)")
        let asBytes = try generate(["--tokenizer", "bytes"])
        #expect(asBytes.status != 0 && asBytes.standardError.contains("--tokenizer bytes is tokenizer bytes"), "\(asBytes.standardError)")

        // eval of another tokenizer's ids.
        let eval = try Launcher.plain("meshlm", ["eval", "--checkpoint", step, "--tokens", path("shards-bytes"), "--seq-len", "32",
                                                 "--max-tokens", "256", "--threads", "1"])
        #expect(eval.status != 0)
        #expect(eval.standardError.contains("\(path("shards-bytes")) (tokenized with it) is tokenizer bytes")
                && eval.standardError.contains("tokenize the data with the checkpoint's tokenizer"), "\(eval.standardError)")

        // Resuming the run on another tokenizer's shards.
        let resumed = try pretrain(path("shards-bytes"), steps: 4)
        #expect(resumed.status != 0)
        #expect(resumed.standardError.contains("data.train \(path("shards-bytes")) (tokenized with it) is tokenizer bytes")
                && resumed.standardError.contains("\(step) was trained with tokenizer a.json"), "\(resumed.standardError)")

        // A checkpoint that records a BPE tokenizer but lost its tokenizer.json: no byte fallback.
        try FileManager.default.removeItem(atPath: step + "/tokenizer.json")
        let lost = try generate([])
        #expect(lost.status != 0)
        #expect(lost.standardError.contains("\(step) was trained with tokenizer a.json (sha256:")
                && lost.standardError.contains("holds no tokenizer.json: give that tokenizer with --tokenizer PATH"), "\(lost.standardError)")
        #expect(try generate(["--tokenizer", path("a.json")]).status == 0)
    }
}
