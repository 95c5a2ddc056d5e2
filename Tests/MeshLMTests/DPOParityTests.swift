import Foundation
import Testing

let dpoStepFixtures = repositoryRoot.appendingPathComponent("Tests/ModelTests/Fixtures/dpo-step")
let dpoStepFixtureExists = FileManager.default.fileExists(atPath: dpoStepFixtures.appendingPathComponent("dpo_step.json").path)

/// `meshlm dpo` against TRL's `DPOTrainer`, end to end for one step: the tiny Qwen2 model
/// (Tests/ModelTests/Fixtures/hf-qwen2) as the policy, full fine-tuning, a perturbed copy of it as
/// the reference (`dpo.reference`), eight plain-text pairs through the byte tokenizer, one global
/// batch of all of them (4 rows of 2 pairs, 2 micro-batches). The step's loss, gradient norm,
/// rewards/* and logps/* in metrics.jsonl must be TRL's (Tests/ModelTests/Fixtures/dpo-step,
/// written by tools/golden/make_dpo_step_fixture.py with the models in float64) within 1e-5
/// relative, on one rank and on two (data parallel, tensor parallel).
@Suite(.serialized, .enabled(if: dpoStepFixtureExists, "the fixture is missing: run tools/golden/make_dpo_step_fixture.py"))
struct DPOParityTests {
    static let fixtures = dpoStepFixtures

    struct Fixture: Decodable {
        struct Case: Decodable {
            let name: String
            let lossTypes: [String]
            let lossWeights: [Double]
            let beta: Double
            let float64: [String: Double]
            let float32: [String: Double]
        }

        let sequenceLength: Int
        let pairsPerRow: Int
        let cases: [Case]
    }

    /// The figures compared (metrics.jsonl's names, TRL's).
    static let figures = ["loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                          "logps/chosen", "logps/rejected"]

    /// The policy and the reference, imported once per test process.
    static let checkpoints: (policy: String, reference: String) = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dpo-parity-\(getpid())")
        let policy = directory.appendingPathComponent("policy").path, reference = directory.appendingPathComponent("reference").path
        for (source, output) in [(repositoryRoot.appendingPathComponent("Tests/ModelTests/Fixtures/hf-qwen2").path, policy),
                                 (fixtures.appendingPathComponent("reference").path, reference)] {
            let launch = try? Launcher.plain("meshlm", ["ckpt", "import-hf", source, "--output", output])
            if launch?.status != 0 { Issue.record("import-hf \(source): \(launch?.standardError ?? "did not run")") }
        }
        return (policy, reference)
    }()

    func fixture() throws -> Fixture {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("dpo_step.json")))
    }

    /// One `meshlm dpo` step of `setting` on `ranks` ranks; metrics.jsonl's step-0 line.
    func step(_ setting: Fixture.Case, rows: Int, sequenceLength: Int, ranks: Int, layout: [String] = []) throws -> (Launch, [String: Double]) {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dpo-parity-\(getpid())-\(UUID().uuidString.prefix(6))")
        defer { try? FileManager.default.removeItem(at: run) }
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let list = { (values: [String]) in "[" + values.joined(separator: ", ") + "]" }
        let config = """
            model: {model_type: qwen2, vocab_size: 263, hidden_size: 40, intermediate_size: 72, num_hidden_layers: 2,
                    num_attention_heads: 4, num_key_value_heads: 2, head_dim: 10, rope_theta: 1000000, rms_norm_eps: 1.0e-6,
                    max_position_embeddings: 256}
            run: {dir: \(run.appendingPathComponent("run").path)}
            train: {steps: 1, seed: 1234, seq_len: \(sequenceLength), global_batch_size: \(rows), micro_batch_size: 2,
                    log_interval: 1, eval_interval: 0}
            optimizer: {lr: 1.0e-6, warmup_steps: 0, schedule: constant, weight_decay: 0.0, grad_clip: 1.0}
            data: {train: \(Self.fixtures.appendingPathComponent("pairs.jsonl").path)}
            checkpoint: {interval: 0}
            preference: {template: auto}
            dpo: {loss_type: \(list(setting.lossTypes)), loss_weights: \(list(setting.lossWeights.map { "\($0)" })),
                  beta: \(setting.beta), reference: \(Self.checkpoints.reference)}
            """
        let path = run.appendingPathComponent("dpo.yaml").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let launch = try Launcher.mpirun(ranks, "meshlm", ["dpo", "--config", path, "--init-from", Self.checkpoints.policy,
                                                           "--tokenizer", "bytes"] + layout.flatMap { ["--set", $0] })
        let metrics = run.appendingPathComponent("run/metrics.jsonl")
        let lines = ((try? String(contentsOf: metrics, encoding: .utf8)) ?? "").split(separator: "\n")
        let first = lines.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }.first { $0["step"] as? Int == 0 && $0["loss"] != nil }
        var figures: [String: Double] = [:]
        for name in Self.figures { figures[name] = (first?[name] as? NSNumber)?.doubleValue }
        return (launch, figures)
    }

    /// The largest relative difference of `got` from `expected` over the figures, and each one's.
    func compare(_ got: [String: Double], _ expected: [String: Double]) -> (worst: Double, each: String) {
        var worst = 0.0, each: [String] = []
        for name in Self.figures {
            let want = expected[name] ?? .nan, have = got[name] ?? .nan
            let difference = abs(have - want) / max(abs(want), 1e-12)
            worst = difference.isNaN ? .infinity : max(worst, difference)
            each.append(String(format: "%@ %.9g vs %.9g (%.1e)", name, have, want, difference))
        }
        return (worst, each.joined(separator: "; "))
    }

    @Test(arguments: ["sigmoid", "ipo", "sigmoid_sft"])
    func oneStepMatchesTRL(_ name: String) throws {
        let fixture = try fixture()
        let setting = try #require(fixture.cases.first { $0.name == name })
        let rows = 8 / fixture.pairsPerRow
        var layouts: [(Int, [String])] = [(1, [])]
        if name == "sigmoid_sft" { layouts += [(2, []), (2, ["parallel.tp=2"])] }
        for (ranks, layout) in layouts {
            let (launch, got) = try step(setting, rows: rows, sequenceLength: fixture.sequenceLength, ranks: ranks, layout: layout)
            #expect(launch.status == 0, "\(launch.standardError)")
            let output = launch.standardOutput + launch.standardError
            #expect(output.contains("packed into \(rows) rows of \(fixture.sequenceLength)"), "\(output)")
            let (worst, each) = compare(got, setting.float64)
            let torchFloat32 = compare(setting.float32, setting.float64).worst
            print("dpo parity \(name) np \(ranks) \(layout): max relative difference to TRL (float64) \(worst) "
                  + "(TRL's own float32 run: \(torchFloat32)): \(each)")
            #expect(worst <= 1e-5, "\(name) np \(ranks) \(layout): \(each)")
        }
    }
}
