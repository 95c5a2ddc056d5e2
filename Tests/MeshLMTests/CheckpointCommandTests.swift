import Foundation
import Testing

/// `meshlm pretrain` checkpoints and `meshlm ckpt` end to end: an asynchronous save equals a
/// synchronous one byte for byte, a corrupt or truncated newest checkpoint is caught by
/// `verify` and by load (naming file and tensor) and resume falls back to the previous one,
/// and the tools' outputs (inspect, reshard, import-hf) load in `pretrain`.
@Suite(.serialized) struct CheckpointCommandTests {
    let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
    let smallModel = ["--set", "model.vocab_size=263", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=72",
                      "--set", "model.num_hidden_layers=2", "--set", "model.num_attention_heads=4", "--set", "model.num_key_value_heads=2"]

    func scratch(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-ckptcmd-\(getpid())-\(name)").path
    }

    func train(_ ranks: Int, run: String, steps: Int, extra: [String] = []) throws -> Launch {
        try Launcher.mpirun(ranks, "meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run)",
            "--set", "train.steps=\(steps)", "--set", "train.log_interval=1", "--set", "train.eval_interval=0",
            "--set", "train.seq_len=64", "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2",
            "--set", "checkpoint.interval=2", "--set", "checkpoint.keep=5"] + smallModel + extra)
    }

    func ckpt(_ arguments: [String]) throws -> Launch { try Launcher.plain("meshlm", ["ckpt"] + arguments) }

    @Test func asyncEqualsSyncAndCorruptionFallsBack() throws {
        let asyncRun = scratch("async"), syncRun = scratch("sync")
        defer { for path in [asyncRun, syncRun] { try? FileManager.default.removeItem(atPath: path) } }
        // With `compression: auto` which frames are stored depends on the rates a save measures;
        // with zstd (or none) the bytes depend only on the values.
        let first = try train(2, run: asyncRun, steps: 4, extra: ["--set", "parallel.zero_stage=3", "--set", "checkpoint.compression=zstd"])
        #expect(first.status == 0, "\(first.standardError)")
        #expect(first.standardOutput.contains("writing in the background"))
        let second = try train(2, run: syncRun, steps: 4, extra: ["--set", "parallel.zero_stage=3", "--set", "checkpoint.async=false",
                                                                  "--set", "checkpoint.compression=zstd"])
        #expect(second.status == 0, "\(second.standardError)")
        for step in ["step_00000002", "step_00000004"] {
            for file in ["rank_00000.bin", "rank_00001.bin", "index.json", "metadata.json", "model_config.json"] {
                let a = FileManager.default.contents(atPath: "\(asyncRun)/checkpoints/\(step)/\(file)")
                #expect(a != nil && a == FileManager.default.contents(atPath: "\(syncRun)/checkpoints/\(step)/\(file)"), "\(step)/\(file) differs")
            }
        }

        // inspect: a table with the mesh, and JSON.
        let inspect = try ckpt(["inspect", asyncRun + "/checkpoints"])
        #expect(inspect.status == 0, "\(inspect.standardError)")
        #expect(inspect.standardOutput.contains("step 4; saved on dp 2, ZeRO-3"))
        #expect(inspect.standardOutput.contains("model.layers.1.mlp.down_proj.weight") && inspect.standardOutput.contains("rank_00001.bin"))
        let json = try ckpt(["inspect", asyncRun + "/checkpoints/step_00000002", "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any]
        #expect(object?["step"] as? Int == 2 && (object?["tensors"] as? [Any])?.count == 63)

        // A flipped byte in the newest checkpoint: verify names file and tensor; resume falls back.
        let newest = asyncRun + "/checkpoints/step_00000004"
        let shard = newest + "/rank_00001.bin"
        var bytes = try #require(FileManager.default.contents(atPath: shard))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: shard))
        let verify = try ckpt(["verify", newest])
        #expect(verify.status == 1)
        #expect(verify.standardError.contains(shard) && verify.standardError.contains("tensor "), "\(verify.standardError)")
        #expect(try ckpt(["verify", asyncRun + "/checkpoints/step_00000002"]).status == 0)
        let explicit = try train(1, run: asyncRun, steps: 6, extra: ["--resume-from", newest])
        #expect(explicit.status != 0 && explicit.standardError.contains(shard), "\(explicit.standardError)")
        let resumed = try train(1, run: asyncRun, steps: 6, extra: ["--resume"])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardError.contains("skipping checkpoint \(newest)") || resumed.standardOutput.contains("skipping checkpoint \(newest)"),
                "no fallback warning: \(resumed.standardOutput) \(resumed.standardError)")
        #expect(resumed.standardOutput.contains("pretrain: resuming at step 2"))
        // metrics.jsonl holds each step once: the rows of steps 2 and 3 logged after the
        // checkpoint it resumed from are dropped, not kept beside the resumed run's.
        #expect(resumed.standardOutput.contains("dropped 2 rows of metrics.jsonl"), "\(resumed.standardOutput)")
        let rows = try String(contentsOfFile: asyncRun + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(rows.compactMap { $0["step"] as? Int } == Array(0..<6))

        // A truncated file: verify and load both name it.
        let truncated = syncRun + "/checkpoints/step_00000004/rank_00000.bin"
        let whole = try #require(FileManager.default.contents(atPath: truncated))
        try whole.prefix(whole.count - 100).write(to: URL(fileURLWithPath: truncated))
        let verifyTruncated = try ckpt(["verify", syncRun + "/checkpoints"])
        #expect(verifyTruncated.status == 1 && verifyTruncated.standardError.contains("\(truncated) is truncated"), "\(verifyTruncated.standardError)")
        let loadTruncated = try train(1, run: syncRun, steps: 6, extra: ["--resume-from", syncRun + "/checkpoints/step_00000004"])
        #expect(loadTruncated.status != 0 && loadTruncated.standardError.contains("\(truncated) is truncated"), "\(loadTruncated.standardError)")
    }

    /// reshard's output resumes on the mesh it was written for, with the losses of the run it
    /// came from; import-hf of an export starts a run with --init-from.
    @Test func reshardedAndImportedCheckpointsTrain() throws {
        let run = scratch("tools"), moved = scratch("tools-moved"), hf = scratch("tools-hf"), imported = scratch("tools-imported")
        let continued = scratch("tools-continued"), started = scratch("tools-started")
        defer { for path in [run, moved, hf, imported, continued, started] { try? FileManager.default.removeItem(atPath: path) } }
        let whole = try train(1, run: run, steps: 6)
        #expect(whole.status == 0, "\(whole.standardError)")
        let expected = try losses(in: URL(fileURLWithPath: run))
        let reshard = try ckpt(["reshard", run + "/checkpoints/step_00000002", "--dp", "4", "--zero", "2", "--output", moved])
        #expect(reshard.status == 0, "\(reshard.standardError)")
        #expect(FileManager.default.fileExists(atPath: moved + "/step_00000002/rank_00003.bin"))
        let refused = try ckpt(["reshard", run + "/checkpoints", "--dp", "1", "--tp", "3", "--output", moved + "-x"])
        #expect(refused.status == 1 && refused.standardError.contains("tensor parallel degree tp 3 must divide num_attention_heads 4"),
                "\(refused.standardError)")
        // Written as tp 2 × pp 2 would save it (column runs, stages), it resumes on that layout.
        let split = scratch("tools-split"), splitRun = scratch("tools-split-run")
        defer { for path in [split, splitRun] { try? FileManager.default.removeItem(atPath: path) } }
        let resplit = try ckpt(["reshard", run + "/checkpoints/step_00000002", "--dp", "1", "--tp", "2", "--pp", "2", "--output", split])
        #expect(resplit.status == 0, "\(resplit.standardError)")
        let onSplit = try train(4, run: splitRun, steps: 6, extra: ["--resume-from", split, "--set", "parallel.tp=2", "--set", "parallel.pp=2"])
        #expect(onSplit.status == 0, "\(onSplit.standardError)")
        let splitLosses = try losses(in: URL(fileURLWithPath: splitRun))
        var splitWorst = 0.0
        for step in 2..<6 { splitWorst = max(splitWorst, abs((splitLosses[step] ?? .nan) - (expected[step] ?? 0)) / (expected[step] ?? 1)) }
        print("resharded dp 1 → tp 2 × pp 2: steps 2-5 max relative loss difference \(splitWorst)")
        #expect(splitWorst <= 1e-5)
        let resumed = try train(4, run: continued, steps: 6, extra: ["--resume-from", moved, "--set", "parallel.zero_stage=2"])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardOutput.contains("pretrain: resuming at step 2"))
        let got = try losses(in: URL(fileURLWithPath: continued))
        var worst = 0.0
        for step in 2..<6 { worst = max(worst, abs((got[step] ?? .nan) - (expected[step] ?? 0)) / (expected[step] ?? 1)) }
        print("resharded dp 1 → dp 4 ZeRO-2: steps 2-5 max relative loss difference \(worst)")
        #expect(worst <= 1e-6)

        let export = try ckpt(["export-hf", run + "/checkpoints", "--output", hf])
        #expect(export.status == 0, "\(export.standardError)")
        for file in ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
            #expect(FileManager.default.fileExists(atPath: hf + "/" + file), "\(file) missing")
        }
        let importing = try ckpt(["import-hf", hf, "--output", imported])
        #expect(importing.status == 0, "\(importing.standardError)")
        let start = try train(1, run: started, steps: 1, extra: ["--init-from", imported, "--set", "checkpoint.interval=0"])
        #expect(start.status == 0, "\(start.standardError)")
        #expect(start.standardOutput.contains("starting from the parameters of \(imported)"))
        // The first loss is the trained model's, far below a fresh initialization's (~ln 263 = 5.6).
        let first = try losses(in: URL(fileURLWithPath: started))[0] ?? 99
        #expect(first < (expected[0] ?? 0) - 0.1, "init-from loss \(first) vs fresh \(expected[0] ?? 0)")
    }
}
