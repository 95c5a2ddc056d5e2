import Foundation
import Testing

/// `meshlm pretrain` of a mixture-of-experts model under mpirun: data parallelism, ZeRO and
/// pipeline stages give one rank's losses and routing figures, with and without token dropping;
/// a run resumes bitwise and on another mesh; layouts MoE cannot take yet are refused.
@Suite(.serialized) struct MixtureOfExpertsTrainingTests {
    let config = repositoryRoot.appendingPathComponent("configs/pretrain/tiny-moe.yaml").path
    /// Smaller than tiny-moe.yaml's model so the debug-build runs stay fast; 4 experts, top-2.
    let smallModel = ["--set", "model.vocab_size=263", "--set", "model.hidden_size=32", "--set", "model.intermediate_size=40",
                      "--set", "model.num_hidden_layers=2", "--set", "model.num_attention_heads=4",
                      "--set", "model.num_key_value_heads=2", "--set", "model.num_local_experts=4"]

    func pretrain(ranks: Int, _ sets: [String], steps: Int = 12, run: URL? = nil) throws -> (Launch, URL) {
        let run = run ?? FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-moe-\(getpid())-\(UUID().uuidString.prefix(6))")
        var arguments = ["pretrain", "--config", config,
            "--set", "data.train=\(testShards.path)", "--set", "data.eval=\(testShards.path)", "--set", "run.dir=\(run.path)",
            "--set", "train.steps=\(steps)", "--set", "train.log_interval=1", "--set", "train.eval_interval=0",
            "--set", "train.seq_len=64", "--set", "train.global_batch_size=8", "--set", "train.micro_batch_size=2"] + smallModel
        for set in sets { arguments += ["--set", set] }
        return (try Launcher.mpirun(ranks, "meshlm", arguments), run)
    }

    /// step → the named column of metrics.jsonl.
    func column(_ name: String, in run: URL) throws -> [Int: Double] {
        let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var result: [Int: Double] = [:]
        for line in text.split(separator: "\n") {
            guard let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let step = row["step"] as? Int, let value = row[name] as? Double else { continue }
            result[step] = value
        }
        return result
    }

    func worstRelativeDifference(_ got: [Int: Double], _ expected: [Int: Double]) -> Double {
        expected.reduce(0) { worst, entry in max(worst, abs((got[entry.key] ?? .nan) - entry.value) / max(abs(entry.value), 1e-12)) }
    }

    @Test(arguments: [("dropless", "model.moe_capacity_factor=0"), ("capacity 1.0", "model.moe_capacity_factor=1.0")])
    func everyLayoutEqualsOneRank(label: String, capacity: String) throws {
        let (reference, referenceRun) = try pretrain(ranks: 1, [capacity])
        #expect(reference.status == 0, "\(reference.standardError)")
        let names = ["loss", "moe_aux_loss", "moe_z_loss", "moe_dropped", "moe_load_max", "moe_load_cv"]
        let expected = try Dictionary(uniqueKeysWithValues: names.map { ($0, try column($0, in: referenceRun)) })
        #expect(expected["loss"]?.count == 12)
        #expect((expected["loss"]?[11] ?? 99) < (expected["loss"]?[0] ?? 0) - 0.3, "\(label): the loss does not fall")
        // The Switch balancing loss is near 1 per layer when balanced (2 layers here), and the
        // load figures are sane.
        #expect((1.8...4.0).contains(expected["moe_aux_loss"]?[0] ?? 0), "\(label): \(expected["moe_aux_loss"] ?? [:])")
        #expect((expected["moe_load_max"]?[0] ?? 0) >= 1)
        if capacity.hasSuffix("=0") {
            #expect(expected["moe_dropped"]?.values.allSatisfy { $0 == 0 } == true)
        } else {
            #expect(expected["moe_dropped"]?.values.contains { $0 > 0 } == true, "\(label): capacity 1.0 dropped nothing")
        }
        for (ranks, sets) in [(2, ["parallel.zero_stage=0"]), (2, ["parallel.zero_stage=3"]), (2, ["parallel.pp=2"]),
                              (4, ["parallel.pp=2", "parallel.zero_stage=1"]), (2, ["train.recompute=true", "parallel.zero_stage=2"])] {
            let (launch, run) = try pretrain(ranks: ranks, [capacity] + sets)
            #expect(launch.status == 0, "\(label) np \(ranks) \(sets): \(launch.standardError)")
            for name in names {
                let worst = worstRelativeDifference(try column(name, in: run), expected[name] ?? [:])
                print("MoE \(label), np \(ranks) \(sets): \(name) max relative difference to one rank \(worst)")
                #expect(worst <= 1e-5, "\(label) np \(ranks) \(sets): \(name)")
            }
        }
    }

    /// Stopped at step 5 and started again: bitwise as if uninterrupted on the same mesh, and
    /// within reassociation on another (saved on dp 2 ZeRO-1 with 2 stages, resumed on one rank).
    @Test func resumesBitwiseAndOnAnotherMesh() throws {
        let (whole, wholeRun) = try pretrain(ranks: 2, ["parallel.zero_stage=1"], steps: 8)
        #expect(whole.status == 0, "\(whole.standardError)")
        let expected = try losses(in: wholeRun)
        let resumedRun = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-moe-resume-\(getpid())")
        let (first, _) = try pretrain(ranks: 2, ["parallel.zero_stage=1", "train.stop_at_step=5"], steps: 8, run: resumedRun)
        #expect(first.status == 0, "\(first.standardError)")
        let (second, _) = try pretrain(ranks: 2, ["parallel.zero_stage=1"], steps: 8, run: resumedRun)
        #expect(second.status == 0, "\(second.standardError)")
        #expect(second.standardOutput.contains("pretrain: resuming at step 5"))
        #expect(try losses(in: resumedRun) == expected, "resumed MoE run differs from the uninterrupted one")

        let movedRun = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-moe-moved-\(getpid())")
        let (saved, _) = try pretrain(ranks: 4, ["parallel.pp=2", "parallel.zero_stage=1", "train.stop_at_step=5"], steps: 8, run: movedRun)
        #expect(saved.status == 0, "\(saved.standardError)")
        let (moved, _) = try pretrain(ranks: 1, [], steps: 8, run: movedRun)
        #expect(moved.status == 0, "\(moved.standardError)")
        #expect(moved.standardOutput.contains("pretrain: resuming at step 5"))
        let worst = worstRelativeDifference(try losses(in: movedRun), expected)
        print("MoE saved on pp 2 × dp 2, resumed on one rank: max relative loss difference \(worst)")
        #expect(worst <= 1e-5)
    }

    @Test func layoutsMoECannotTakeYetAreRefused() throws {
        for (ranks, sets, expected) in [(2, ["parallel.tp=2"], "parallel.tp"), (2, ["parallel.ep=2"], "parallel.ep"),
                                        (2, ["parallel.pp=2", "model.router_aux_loss_type=hf"], "model.router_aux_loss_type"),
                                        (1, ["model.num_experts_per_tok=5"], "model.num_experts_per_tok")] {
            let (launch, run) = try pretrain(ranks: ranks, sets, steps: 2)
            #expect(launch.status != 0, "\(sets) was accepted")
            #expect(launch.standardError.contains(expected), "\(sets): \(launch.standardError)")
            #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent("metrics.jsonl").path))
        }
    }
}
