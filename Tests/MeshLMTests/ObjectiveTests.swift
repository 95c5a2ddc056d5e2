import Foundation
import Testing

/// A second objective plugs into the one trainer: `MaskedNextTokenObjective` trained through
/// `Trainer` under mpirun on every kind of layout gives one rank's losses, and with every weight
/// 1 it trains exactly as next-token pretraining does (DESIGN §7).
@Suite(.serialized) struct ObjectiveTests {
    /// `step → (loss, metrics…)` and the eval loss printed by `mpi-checks objective`.
    func train(_ ranks: Int, _ arguments: [String]) throws -> (losses: [[Double]], eval: Double) {
        let launch = try Launcher.mpirun(ranks, "mpi-checks", ["objective"] + arguments)
        #expect(launch.status == 0, "\(arguments): \(launch.standardError)")
        var losses: [[Double]] = [], eval = Double.nan
        for line in launch.standardError.split(separator: "\n") + launch.standardOutput.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.first == "loss" { losses.append(fields.compactMap { Double($0) }.dropFirst().map { $0 }) }
            if fields.first == "eval", fields.count == 2, let value = Double(fields[1]) { eval = value }
        }
        return (losses, eval)
    }

    func maxRelativeDifference(_ a: [[Double]], _ b: [[Double]]) -> Double {
        zip(a, b).flatMap { zip($0, $1) }.map { abs($0 - $1) / max(abs($1), 1e-12) }.max() ?? .infinity
    }

    /// Trains `objective` (with the check's `options`) on one rank, expects it to learn
    /// (`learned(first loss, last loss)`), then on each (ranks, [pp, tp, zero, …]) layout, and
    /// expects every step's loss (and metrics; and the eval loss when `eval`) within `tolerance`.
    func expectEveryLayoutMatchesOneRank(_ objective: String, options: [String] = [], layouts: [(Int, [String])],
                                         tolerance: Double = 1e-6, eval: Bool = false, label: String,
                                         learned: (Double, Double) -> Bool) throws {
        let reference = try train(1, [objective, "1", "1", "0"] + options)
        #expect(reference.losses.count == 6)
        let curve = reference.losses.map { $0[0] }
        #expect(curve.count == 6 && learned(curve[0], curve[5]), "\(label): the run learns: \(curve)")
        for (ranks, layout) in layouts {
            let got = try train(ranks, [objective] + layout + options)
            let difference = maxRelativeDifference(got.losses, reference.losses)
            print("\(label) np \(ranks) pp/tp/zero \(layout): max relative loss difference to one rank \(difference)")
            #expect(got.losses.count == 6 && difference <= tolerance, "\(label) np \(ranks) \(layout)")
            if eval { #expect(abs(got.eval - reference.eval) / reference.eval <= tolerance, "\(label) np \(ranks) \(layout)") }
        }
    }

    @Test(arguments: ["masked-sequences", "masked-tokens"])
    func everyLayoutGivesOneRanksLosses(objective: String) throws {
        try expectEveryLayoutMatchesOneRank(objective, layouts: [(2, ["1", "1", "3"]), (2, ["2", "1", "0"]), (2, ["1", "2", "0", "sp"]), (4, ["2", "2", "1"])],
                                            eval: true, label: objective) { $1 < $0 - 0.3 }
    }

    /// Qwen2's q/k/v biases (split with their heads; replicated with the KV heads at tp 4 > 2 KV
    /// heads) and Qwen3's QK-norm weights (replicated, their gradients summed over the tensor
    /// group, with and without sequence parallelism) train as on one rank.
    @Test(arguments: ["qwen2", "qwen3"])
    func qwenLayersTrainAsOneRankOnEveryLayout(modelType: String) throws {
        try expectEveryLayoutMatchesOneRank("masked-tokens", options: [modelType],
                                            layouts: [(2, ["1", "2", "0"]), (2, ["1", "2", "3", "sp"]), (4, ["1", "4", "1"]), (4, ["2", "2", "0"])],
                                            eval: true, label: modelType) { $1 < $0 - 0.3 }
    }

    /// LoRA adapters on every projection (each split with its projection under tensor
    /// parallelism, the replicated half's gradient summed over the group; in their own blocks
    /// under ZeRO and pipelines) train as on one rank, and the frozen base stays bitwise as it
    /// was while holding no gradients or optimizer state (`mpi-checks` fails otherwise).
    @Test(arguments: ["llama", "qwen3"])
    func loraTrainsAsOneRankOnEveryLayout(modelType: String) throws {
        try expectEveryLayoutMatchesOneRank("masked-tokens", options: ["lora", modelType],
                                            layouts: [(2, ["1", "1", "3"]), (2, ["2", "1", "1"]), (2, ["1", "2", "0", "sp"]), (4, ["1", "4", "2"]), (4, ["2", "2", "0"])],
                                            label: "LoRA \(modelType)") { $1 < $0 - 0.05 }
    }

    /// DoRA (each magnitude split with its projection's outputs; a row-parallel projection's row
    /// norms and magnitude gradient summed over the tensor group; replicated with the KV heads at
    /// tp 4) without and with LoRA dropout (masks keyed by the global token and input column)
    /// trains as on one rank, the base frozen.
    @Test(arguments: [["dora"], ["dora", "dropout"], ["dropout"]])
    func doraAndDropoutTrainAsOneRankOnEveryLayout(variant: [String]) throws {
        try expectEveryLayoutMatchesOneRank("masked-tokens", options: ["lora"] + variant,
                                            layouts: [(2, ["1", "1", "3"]), (2, ["2", "1", "1"]), (2, ["1", "2", "0", "sp"]), (4, ["1", "4", "2"])],
                                            label: "LoRA \(variant.joined(separator: "+"))") { $1 < $0 - 0.05 }
    }

    /// LoRA+ (`loraplus_lr_ratio` 16): AdamW's first step moves the B matrices by 16 × the
    /// learning rate and the A matrices by 1 × (the check fails otherwise), on one rank and
    /// with ZeRO-2's sharded optimizer step.
    @Test func loraPlusScalesTheLearningRateOfB() throws {
        for (ranks, layout) in [(1, ["1", "1", "0"]), (2, ["1", "1", "2"])] {
            let launch = try Launcher.mpirun(ranks, "mpi-checks", ["objective", "masked-tokens"] + layout + ["lora", "loraplus"])
            #expect(launch.status == 0, "np \(ranks): \(launch.standardError)")
            let report = (launch.standardError + launch.standardOutput).split(separator: "\n").first { $0.contains("loraplus A") }
            print("LoRA+ np \(ranks): \(report ?? "no report")")
            #expect(report != nil)
        }
    }

    /// A scalar (score) head — replicated under tensor parallelism, on the last pipeline stage —
    /// trains as on one rank: its weight gradient on every tensor rank, its input gradient added
    /// once to the final norm's (summed over the group).
    @Test func scoreHeadTrainsAsOneRankOnEveryLayout() throws {
        try expectEveryLayoutMatchesOneRank("score", options: ["qwen2"],
                                            layouts: [(2, ["1", "1", "3"]), (2, ["2", "1", "0"]), (2, ["1", "2", "0", "sp"]), (4, ["1", "4", "1"]), (4, ["2", "2", "2"])],
                                            tolerance: 1e-5, label: "score head") { $1 < $0 * 0.7 }
    }

    /// With every loss weight 1 and token normalization, the gradient of each token is the
    /// same float as next-token pretraining's, so training follows it step for step (the loss
    /// sums differ only in the order Double additions group them).
    @Test func unitWeightsTrainAsNextTokenPretraining() throws {
        let masked = try train(2, ["masked-ones", "1", "1", "0"])
        let nextToken = try train(2, ["next-token", "1", "1", "0"])
        let difference = maxRelativeDifference(masked.losses.map { [$0[0]] }, nextToken.losses)
        print("masked (weights 1) vs next-token: max relative loss difference \(difference)")
        #expect(masked.losses.count == 6 && difference <= 1e-12)
    }

    /// A forward-only model (no gradients, no optimizer state, inference-sized activations)
    /// scores packed variable-length sequences bit for bit as the trainer's model does on the
    /// same mesh (`mpi-checks forward` fails otherwise), and every layout gives one rank's scores.
    @Test func forwardOnlyModelScoresSequencesOnEveryLayout() throws {
        func scores(_ ranks: Int, _ layout: [String]) throws -> [[Double]] {
            let launch = try Launcher.mpirun(ranks, "mpi-checks", ["forward"] + layout)
            #expect(launch.status == 0, "np \(ranks) \(layout): \(launch.standardError)")
            return (launch.standardError + "\n" + launch.standardOutput).split(separator: "\n")
                .filter { $0.hasPrefix("sequence ") }.map { $0.split(separator: " ").dropFirst().compactMap { Double($0) } }
        }
        let reference = try scores(1, ["1", "1", "0"])
        #expect(reference.count >= 8, "four micro-batches of two rows, each packing two sequences")
        for (ranks, layout) in [(2, ["1", "1", "3"]), (2, ["2", "1", "0"]), (2, ["1", "2", "0"]), (4, ["2", "2", "1"])] {
            let got = try scores(ranks, layout)
            let difference = maxRelativeDifference(got, reference)
            print("forward-only np \(ranks) pp/tp/zero \(layout): max relative difference to one rank \(difference)")
            #expect(got.count == reference.count && difference <= 1e-6, "np \(ranks) \(layout)")
        }
    }

    /// `train.freeze`: frozen tensors end every layout bitwise at their initial values (the
    /// check fails otherwise), the rest trains, and every layout gives one rank's losses.
    @Test func frozenTensorsStayFrozenOnEveryLayout() throws {
        let reference = try train(1, ["masked-tokens", "1", "1", "0", "freeze"])
        #expect(reference.losses.count == 6 && reference.losses[5][0] < reference.losses[0][0])
        for (ranks, layout) in [(2, ["1", "1", "3"]), (2, ["2", "1", "0"]), (2, ["1", "2", "0", "sp"]), (4, ["2", "2", "2"])] {
            let got = try train(ranks, ["masked-tokens"] + layout + ["freeze"])
            let difference = maxRelativeDifference(got.losses, reference.losses)
            print("frozen np \(ranks) pp/tp/zero \(layout): max relative loss difference to one rank \(difference)")
            #expect(got.losses.count == 6 && difference <= 1e-6, "np \(ranks) \(layout)")
        }
    }
}
