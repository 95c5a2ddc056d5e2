import Foundation
import Testing

/// `meshlm pretrain` with pipeline parallelism (alone and with tensor and data parallelism) under
/// mpirun: every layout gives one rank's losses and gradient norms (≤ 1e-5 relative per step).
@Suite(.serialized) struct PipelineParallelTests {
    let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny.yaml").path
    /// Four layers so pp 4 and pp 2 × 2 virtual stages each get one; GQA; vocabulary 263.
    let smallModel = ["--set", "model.vocab_size=263", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=72",
                      "--set", "model.num_hidden_layers=4", "--set", "model.num_attention_heads=4",
                      "--set", "model.num_key_value_heads=2"]

    func pretrain(ranks: Int, pp: Int, tp: Int = 1, extra: [String] = []) throws -> (Launch, URL) {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-pp-\(getpid())-\(UUID().uuidString.prefix(8))")
        let launch = try Launcher.mpirun(ranks, "meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run.path)",
            "--set", "train.steps=20", "--set", "train.log_interval=1", "--set", "train.eval_interval=10",
            "--set", "train.seq_len=64", "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2",
            "--set", "parallel.pp=\(pp)", "--set", "parallel.tp=\(tp)"] + smallModel + extra, timeout: 300)
        return (launch, run)
    }

    @Test func everyPipelineLayoutEqualsOneRank() throws {
        let (reference, referenceRun) = try pretrain(ranks: 1, pp: 1)
        #expect(reference.status == 0, "\(reference.standardError)")
        let expected = try lossesAndNorms(in: referenceRun)
        #expect(expected.count == 20)
        // (name, ranks, pp, tp, extra settings)
        let layouts: [(String, Int, Int, Int, [String])] = [
            ("pp 2 (1F1B)", 2, 2, 1, []),
            ("pp 2 interleaved (2 virtual stages)", 2, 2, 1, ["--set", "parallel.virtual_stages=2"]),
            ("pp 4", 4, 4, 1, []),
            ("pp 2 × dp 2 ZeRO-1", 4, 2, 1, ["--set", "parallel.zero_stage=1"]),
            ("tp 2 + sp × pp 2", 4, 2, 2, ["--set", "parallel.sequence_parallel=true"]),
            ("tp 2 × pp 2 × dp 2 ZeRO-1", 8, 2, 2, ["--set", "parallel.zero_stage=1"]),
        ]
        try expectEqualToOneRank(layouts, expected)
    }

    /// A tied model: the first and last stages both hold the embedding table and sum its
    /// gradients; the checkpoint holds it once and loads on one rank.
    @Test func tiedEmbeddingsAcrossStagesEqualOneRank() throws {
        let tied = ["--set", "model.tie_word_embeddings=true"]
        let (reference, referenceRun) = try pretrain(ranks: 1, pp: 1, extra: tied)
        #expect(reference.status == 0, "\(reference.standardError)")
        let expected = try lossesAndNorms(in: referenceRun)
        #expect(expected.count == 20)
        try expectEqualToOneRank([
            ("tied, pp 2 (1F1B)", 2, 2, 1, tied),
            ("tied, pp 2 interleaved", 2, 2, 1, tied + ["--set", "parallel.virtual_stages=2"]),
            ("tied, pp 2 × dp 2 ZeRO-2", 4, 2, 1, tied + ["--set", "parallel.zero_stage=2"]),
            ("tied, tp 2 × pp 2", 4, 2, 2, tied),
        ], expected)
        let (saved, run) = try pretrain(ranks: 4, pp: 4, extra: tied + ["--set", "train.stop_at_step=10"])
        #expect(saved.status == 0, "\(saved.standardError)")
        let resumed = try Launcher.mpirun(1, "meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run.path)",
            "--set", "train.steps=20", "--set", "train.log_interval=1", "--set", "train.eval_interval=10",
            "--set", "train.seq_len=64", "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2"] + smallModel + tied,
            timeout: 300)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardOutput.contains("pretrain: resuming at step 10"))
        let got = try lossesAndNorms(in: run)
        var loss = 0.0
        for (step, reference) in expected { loss = max(loss, abs((got[step]?.loss ?? .nan) - reference.loss) / reference.loss) }
        print("tied, saved on pp 4, resumed on one rank: max relative loss difference \(loss)")
        #expect(got.count == 20 && loss <= 1e-5)
    }

    /// Runs each (name, ranks, pp, tp, extra settings) layout and compares its losses and
    /// gradient norms with one rank's.
    func expectEqualToOneRank(_ layouts: [(String, Int, Int, Int, [String])], _ expected: [Int: (loss: Double, norm: Double)]) throws {
        for (name, ranks, pp, tp, extra) in layouts {
            let (launch, run) = try pretrain(ranks: ranks, pp: pp, tp: tp, extra: extra)
            #expect(launch.status == 0, "\(name): \(launch.standardError)")
            let got = try lossesAndNorms(in: run)
            var loss = 0.0, norm = 0.0
            for (step, reference) in expected {
                let value = got[step] ?? (.nan, .nan)
                loss = max(loss, abs(value.loss - reference.loss) / reference.loss)
                norm = max(norm, abs(value.norm - reference.norm) / reference.norm)
            }
            print("\(name): 20 steps, max relative difference to one rank: loss \(loss), gradient norm \(norm)")
            #expect(got.count == 20, "\(name)")
            #expect(loss <= 1e-5 && norm <= 1e-5, "\(name)")
            // Evaluation runs through the pipeline too.
            #expect(launch.standardOutput.contains("eval_loss"), "\(name)")
        }
    }

    /// Saved on tp 2 × pp 2 at step 10, continued on pp 2 with the interleaved schedule (other
    /// layers on each rank): parameter names are global, so the checkpoint does not care.
    @Test func checkpointsMoveBetweenPipelineLayouts() throws {
        let (reference, referenceRun) = try pretrain(ranks: 1, pp: 1)
        #expect(reference.status == 0, "\(reference.standardError)")
        let expected = try lossesAndNorms(in: referenceRun)
        let (saved, run) = try pretrain(ranks: 4, pp: 2, tp: 2, extra: ["--set", "train.stop_at_step=10"])
        #expect(saved.status == 0, "\(saved.standardError)")
        let resumed = try Launcher.mpirun(2, "meshlm", ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run.path)",
            "--set", "train.steps=20", "--set", "train.log_interval=1", "--set", "train.eval_interval=10",
            "--set", "train.seq_len=64", "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2",
            "--set", "parallel.pp=2", "--set", "parallel.virtual_stages=2"] + smallModel, timeout: 300)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardOutput.contains("pretrain: resuming at step 10"))
        let got = try lossesAndNorms(in: run)
        var loss = 0.0
        for (step, reference) in expected { loss = max(loss, abs((got[step]?.loss ?? .nan) - reference.loss) / reference.loss) }
        print("saved on tp 2 × pp 2, resumed on pp 2 interleaved: max relative loss difference \(loss)")
        #expect(got.count == 20)
        #expect(loss <= 1e-5)
    }

    @Test func layoutsThePipelineCannotTakeAreRefusedNamingBothNumbers() throws {
        let (layers, _) = try pretrain(ranks: 3, pp: 3, extra: ["--set", "model.num_hidden_layers=2"])
        #expect(layers.status != 0)
        #expect(layers.standardError.contains("num_hidden_layers 2 is fewer than the pipeline stages pp 3"), "\(layers.standardError)")
        let (micro, _) = try pretrain(ranks: 4, pp: 4, extra: ["--set", "train.micro_batch_size=4"])
        #expect(micro.status != 0)
        #expect(micro.standardError.contains("pipeline parallel degree pp 4 needs at least 4 micro-batches per step for 1F1B, but the step has 2"),
                "\(micro.standardError)")
    }
}
