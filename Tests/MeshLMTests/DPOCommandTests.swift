import Foundation
import Testing

/// `meshlm dpo` end to end under mpirun: the first pairs of the shipped preference set
/// (data/preference) on the small Qwen2 model imported from transformers, byte tokenizer, LoRA
/// adapters over the frozen base (the reference is the starting checkpoint, scored once):
/// data-, tensor- and pipeline-parallel layouts give one rank's losses, a stopped run resumes
/// bitwise reading the cached reference, and LoRA holds a fraction of full DPO's training state.
@Suite(.serialized) struct DPOCommandTests {
    let config = repositoryRoot.appendingPathComponent("configs/dpo/tiny-lora.yaml").path

    /// The first 40 train and 16 eval pairs and 40 KTO samples, once per test process.
    static let data: (train: String, eval: String, kto: String) = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dpo-data-\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func head(_ name: String, _ count: Int) -> String {
            let source = repositoryRoot.appendingPathComponent("data/preference/\(name)")
            let lines = ((try? String(contentsOf: source, encoding: .utf8)) ?? "").split(separator: "\n").prefix(count)
            let path = directory.appendingPathComponent(name)
            try? (lines.joined(separator: "\n") + "\n").write(to: path, atomically: true, encoding: .utf8)
            return path.path
        }
        return (head("train.jsonl", 40), head("eval.jsonl", 16), head("kto.jsonl", 40))
    }()

    /// Runs `meshlm dpo` in `run` (kept), or in a fresh directory removed afterwards.
    func dpo(_ ranks: Int, _ extra: [String], run given: URL? = nil) throws -> (Launch, [Int: Double]) {
        let (launch, losses, _) = try dpoWithMetrics(ranks, extra, run: given)
        return (launch, losses)
    }

    /// `dpo`, with the step-0 line of metrics.jsonl.
    func dpoWithMetrics(_ ranks: Int, _ extra: [String], run given: URL? = nil) throws -> (Launch, [Int: Double], [String: Any]) {
        let run = given ?? FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dpo-\(getpid())-\(UUID().uuidString.prefix(6))")
        defer { if given == nil { try? FileManager.default.removeItem(at: run) } }
        var arguments = ["dpo", "--config", config, "--init-from", SFTCommandTests.base, "--tokenizer", "bytes",
                         "--set", "run.dir=\(run.path)", "--set", "train.steps=6", "--set", "train.log_interval=1",
                         "--set", "train.eval_interval=0", "--set", "train.seq_len=256", "--set", "train.global_batch_size=4",
                         "--set", "train.micro_batch_size=2", "--set", "checkpoint.interval=0", "--set", "optimizer.lr=0.01",
                         "--set", "data.train=\(Self.data.train)", "--set", "data.eval=\(Self.data.eval)"]
        arguments += SFTCommandTests.qwenModel.flatMap { ["--set", $0] } + extra
        let launch = try Launcher.mpirun(ranks, "meshlm", arguments)
        let text = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
        let first = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { $0["step"] as? Int == 0 && $0["loss"] != nil } ?? [:]
        return (launch, (try? losses(in: run)) ?? [:], first)
    }

    let lora = ["--set", "lora.r=8", "--set", "lora.lora_alpha=16"]

    /// The shipped config's RPO (sigmoid and an NLL term normalized by the global batch's chosen
    /// tokens, an auxiliary normalization summed over the ranks).
    @Test func everyLayoutGivesOneRanksLosses() throws {
        let (reference, expected, first) = try dpoWithMetrics(1, lora)
        #expect(reference.status == 0, "\(reference.standardError)")
        #expect(expected.count == 6)
        // Fresh adapters add nothing: the policy is the reference at step 0, so every log-ratio is 0.
        #expect(first["rewards/chosen"] as? Double == 0 && first["rewards/margins"] as? Double == 0, "step 0: \(first)")
        for (ranks, layout) in [(2, ["parallel.zero_stage=2"]), (2, ["parallel.tp=2"]), (2, ["parallel.pp=2"])] {
            let (launch, got) = try dpo(ranks, lora + layout.flatMap { ["--set", $0] })
            #expect(launch.status == 0, "\(layout): \(launch.standardError)")
            let worst = expected.keys.map { abs((got[$0] ?? .nan) - expected[$0]!) / expected[$0]! }.max() ?? .infinity
            print("dpo LoRA \(layout) np \(ranks): max relative loss difference to one rank \(worst)")
            #expect(worst <= 1e-5, "\(layout)")
        }
    }

    /// Stopped after step 3 and resumed, a run continues bitwise as if uninterrupted, and the
    /// resumed run reads every reference figure from the cache the first run wrote.
    @Test func resumesBitwiseReadingTheCachedReference() throws {
        let (whole, expected) = try dpo(2, lora)
        #expect(whole.status == 0, "\(whole.standardError)")
        #expect(whole.standardOutput.contains(" 0 rows from "), "the first run scores every row: \(whole.standardOutput)")
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-dpo-resume-\(getpid())")
        defer { try? FileManager.default.removeItem(at: run) }
        let first = try dpo(2, lora + ["--set", "train.stop_at_step=3", "--set", "checkpoint.interval=3"], run: run)
        #expect(first.0.status == 0, "\(first.0.standardError)")
        let second = try dpo(2, lora + ["--resume"], run: run)
        #expect(second.0.status == 0, "\(second.0.standardError)")
        #expect(second.0.standardOutput.contains("resuming at step 3"), "\(second.0.standardOutput)")
        #expect(second.0.standardOutput.contains(", 0 scored in"), "the resumed run reads the reference from its cache: \(second.0.standardOutput)")
        #expect(second.1 == expected, "the resumed run differs from the uninterrupted one")
    }

    /// LoRA DPO trains adapters only: its gradients and optimizer state are a small fraction of
    /// full DPO's (neither keeps a second copy of the model for the reference: its figures are
    /// cached before training).
    @Test func loraHoldsAFractionOfFullDPOsTrainingState() throws {
        func memory(_ launch: Launch) -> [String: Double] {
            // "memory per rank: parameters 0.2 MB, gradients 0.0 MB, optimizer state 0.1 MB, …; peak RSS per rank 70 MB"
            let line = (launch.standardError + launch.standardOutput).split(separator: "\n").first { $0.contains("memory per rank:") } ?? ""
            var figures: [String: Double] = [:]
            for name in ["parameters", "gradients", "optimizer state", "peak RSS per rank"] {
                guard let range = line.range(of: name + " ") else { continue }
                figures[name] = Double(line[range.upperBound...].prefix { $0 != " " && $0 != "," })
            }
            return figures
        }
        let (loraLaunch, _) = try dpo(1, lora + ["--set", "train.steps=2"])
        let (fullLaunch, _) = try dpo(1, ["--set", "train.steps=2"])
        #expect(loraLaunch.status == 0 && fullLaunch.status == 0, "\(loraLaunch.standardError)\(fullLaunch.standardError)")
        let (adapters, full) = (memory(loraLaunch), memory(fullLaunch))
        print("dpo memory per rank (MB): LoRA \(adapters), full \(full)")
        let state = { (figures: [String: Double]) in (figures["gradients"] ?? .nan) + (figures["optimizer state"] ?? .nan) }
        #expect(state(adapters) < 0.5 * state(full), "LoRA \(adapters) vs full \(full)")
    }

    /// `meshlm kto`: the KL estimate z₀ is gathered over the data-parallel ranks (so dp 2 and tp 2
    /// give one rank's losses), logged as `kl`, and the step-0 loss is KTO's at ρ = 0 with z₀ = 0:
    /// 1 − σ(0) = 0.5 for every sample.
    @Test func ktoGivesOneRanksLossesOnEveryLayout() throws {
        func kto(_ ranks: Int, _ extra: [String]) throws -> (Launch, [Int: Double], String) {
            let run = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-kto-\(getpid())-\(UUID().uuidString.prefix(6))")
            defer { try? FileManager.default.removeItem(at: run) }
            var arguments = ["kto", "--config", repositoryRoot.appendingPathComponent("configs/kto/tiny-lora.yaml").path,
                             "--init-from", SFTCommandTests.base, "--tokenizer", "bytes",
                             "--set", "run.dir=\(run.path)", "--set", "train.steps=4", "--set", "train.log_interval=1",
                             "--set", "train.seq_len=256", "--set", "train.global_batch_size=4", "--set", "train.micro_batch_size=2",
                             "--set", "checkpoint.interval=0", "--set", "optimizer.lr=0.01", "--set", "data.train=\(Self.data.kto)"]
            arguments += SFTCommandTests.qwenModel.flatMap { ["--set", $0] } + lora + extra
            let launch = try Launcher.mpirun(ranks, "meshlm", arguments)
            let metrics = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
            return (launch, (try? losses(in: run)) ?? [:], metrics)
        }
        let (reference, expected, metrics) = try kto(1, [])
        #expect(reference.status == 0, "\(reference.standardError)")
        #expect(expected.count == 4 && abs((expected[0] ?? 0) - 0.5) < 1e-6, "\(expected)")
        #expect(metrics.contains("\"kl\":"), "\(metrics)")
        for (ranks, layout) in [(2, ["parallel.zero_stage=1"]), (2, ["parallel.tp=2"])] {
            let (launch, got, _) = try kto(ranks, layout.flatMap { ["--set", $0] })
            #expect(launch.status == 0, "\(layout): \(launch.standardError)")
            let worst = expected.keys.map { abs((got[$0] ?? .nan) - expected[$0]!) / expected[$0]! }.max() ?? .infinity
            print("kto LoRA \(layout) np \(ranks): max relative loss difference to one rank \(worst)")
            #expect(worst <= 1e-5, "\(layout)")
        }
    }

    /// The reference pass resumes from a partial cache on any layout: a cache cut back to its
    /// first rows' flags (as a pass killed half way leaves it) is read for those rows — the
    /// figures written over the file's show they are not scored again — and only the rest is
    /// scored, giving one rank's figures; a complete cache is read whole.
    @Test func referencePassResumesFromAPartialCacheOnAnyLayout() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-reference-\(getpid())")
        defer { try? FileManager.default.removeItem(at: directory) }
        func pass(_ ranks: Int, _ layout: [String]) throws -> (scored: [Int], figures: [[Double]]) {
            let launch = try Launcher.mpirun(ranks, "mpi-checks", ["reference", directory.path] + layout)
            #expect(launch.status == 0, "np \(ranks) \(layout): \(launch.standardError)")
            let lines = (launch.standardError + "\n" + launch.standardOutput).split(separator: "\n")
            let scored = lines.first { $0.hasPrefix("scored ") }.map { $0.split(separator: " ").dropFirst().compactMap { Int($0) } } ?? []
            let figures = lines.filter { $0.hasPrefix("reference ") }.map { $0.split(separator: " ").dropFirst(2).compactMap { Double($0) } }
            return (scored, figures)
        }
        let first = try pass(1, ["1", "1", "0"])
        #expect(first.figures.count == 30 && first.scored.first == 0, "\(first.scored)")
        let rows = first.scored.last ?? 0
        let again = try pass(1, ["1", "1", "0"])
        #expect(again.scored == [rows, 0] && again.figures == first.figures, "a complete cache is read whole: \(again.scored)")

        // Cut back: only the first half of the rows done; every cached figure replaced by a marker.
        let file = directory.appendingPathComponent("train.logps")
        var data = try Data(contentsOf: file)
        let body = data.firstIndex(of: UInt8(ascii: "\n"))! + 1
        for row in rows / 2..<rows { data[body + row] = 0 }
        let marker = 12345.0
        for value in 0..<60 {
            withUnsafeBytes(of: marker.bitPattern.littleEndian) { data.replaceSubrange(body + rows + 8 * value..<body + rows + 8 * value + 8, with: $0) }
        }
        try data.write(to: file)
        let resumed = try pass(2, ["1", "2", "0"])
        #expect(resumed.scored == [rows / 2, rows - rows / 2], "\(resumed.scored)")
        let flat = (resumed.figures.flatMap { $0 }, first.figures.flatMap { $0 })
        let kept = flat.0.filter { $0 == marker }.count
        let worst = zip(flat.0, flat.1).filter { $0.0 != marker }.map { abs($0.0 - $0.1) / abs($0.1) }.max() ?? .infinity
        print("reference pass resumed on tp 2: \(kept) figures read from the cut-back cache, the rest within \(worst) of one rank's")
        #expect(kept > 0 && kept < 60 && worst <= 1e-6)
    }
}
