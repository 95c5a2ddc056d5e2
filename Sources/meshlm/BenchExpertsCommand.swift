import ArgumentParser
import Foundation
import Model
import Runtime
import Tensors
import Training

struct BenchExpertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experts",
        abstract: "The grouped GEMM of a mixture-of-experts layer against one sgemm over the same rows, per rows per expert.",
        discussion: """
            A sparse layer runs each expert's gate, up and down products over the rows routed to it \
            (docs/moe.md): E products of [r, C]·[I, C]ᵀ and [r, I]·[C, I]ᵀ, each expert with its own \
            weights. This measures that forward (gate + up + down for every expert) against the same \
            products as one sgemm over all E·r rows with one expert's weights — the rate a dense MLP \
            of that width would get — and both as a share of the FMA peak measured in the same run, \
            alternating the two in every repeat.
            """)

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(help: "Model config (its hidden_size, moe_intermediate_size, num_local_experts).") var model = "configs/model/124m-moe.yaml"
    @Option(parsing: .upToNextOption, help: "Rows per expert (default 64 128 256 512 1024; --quick: 256).") var rows: [Int] = []

    func run() throws {
        try job.runJob { context in
            printMachineReport(context, json: bench.json)
            let yaml = "model: \(model)\nrun: {dir: /tmp/meshlm-bench-experts}\ntrain: {steps: 1, seq_len: 16, global_batch_size: 1, micro_batch_size: 1}\noptimizer: {lr: 1.0e-4}\ndata: {train: synthetic}\n"
            let config = try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: "bench experts", includes: ["model"]).model
            guard config.hasExperts else { throw JobError("\(model) has no experts (num_local_experts 0)") }
            let (c, i, e) = (config.hiddenSize, config.moeIntermediateSize, config.numLocalExperts)
            let rowCounts = rows.isEmpty ? (bench.quick ? [256] : [64, 128, 256, 512, 1024]) : rows
            guard rowCounts.allSatisfy({ $0 >= 1 }) else { throw JobError("--rows: each must be at least 1") }
            let threads = KernelThreads(count: context.threads)
            let peak = CPUInfo.measureFMAPeak(threads: context.threads, seconds: bench.quick ? 0.05 : 0.1)
            var report = BenchReport(bench: "experts",
                                     columns: ["experts", "rows/expert", "C", "I", "grouped GFLOP/s", "one sgemm GFLOP/s", "grouped / sgemm", "of peak"],
                                     json: bench.json, log: context.log)
            var generator = SplitMix64(seed: 7)
            // Each expert's gate, up (adjacent, [2I, C]) and down [C, I].
            let weights = Tensor(shape: [e * 3 * i * c])
            weights.fillNormal(standardDeviation: 0.02, generator: &generator)
            for r in rowCounts {
                let input = Tensor(shape: [e * r, c]), gateUp = Tensor(shape: [e * r, 2 * i]), output = Tensor(shape: [e * r, c])
                input.fillNormal(standardDeviation: 1, generator: &generator)
                let flops = 2 * Double(e * r) * Double(3 * i * c) / 1e9
                func grouped() {
                    for expert in 0..<e {
                        let w = weights.pointer + expert * 3 * i * c
                        Matmul.forward(output: gateUp.pointer + expert * r * 2 * i, input: input.pointer + expert * r * c, weight: w, bias: nil,
                                       rowCount: r, inputSize: c, outputSize: 2 * i, threads: threads)
                        Matmul.forward(output: output.pointer + expert * r * c, input: gateUp.pointer + expert * r * 2 * i, weight: w + 2 * i * c,
                                       bias: nil, rowCount: r, inputSize: i, outputSize: c, threads: threads)
                    }
                }
                func single() {
                    Matmul.forward(output: gateUp.pointer, input: input.pointer, weight: weights.pointer, bias: nil,
                                   rowCount: e * r, inputSize: c, outputSize: 2 * i, threads: threads)
                    Matmul.forward(output: output.pointer, input: gateUp.pointer, weight: weights.pointer + 2 * i * c, bias: nil,
                                   rowCount: e * r, inputSize: i, outputSize: c, threads: threads)
                }
                // Alternating batches of the two, so both see the same machine.
                let (groupedTiming, singleTiming) = Timing.measureAlternately(repeats: bench.repeats, minimumSeconds: bench.quick ? 0.05 : 0.3,
                                                                              grouped, reference: single)
                let groupedRate = groupedTiming.rate(flops), singleRate = singleTiming.rate(flops)
                let ratio = groupedRate.median / singleRate.median
                report.add(cells: ["\(e)", "\(r)", "\(c)", "\(i)", formatRange(groupedRate), formatRange(singleRate),
                                   String(format: "%.2f", ratio),
                                   String(format: "%.1f%%", 100 * groupedRate.median / peak)],
                           fields: ["experts": e, "rows_per_expert": r, "hidden": c, "expert_width": i,
                                    "grouped_gflops": groupedRate.median, "sgemm_gflops": singleRate.median,
                                    "ratio": ratio, "grouped_gflops_min": groupedRate.low, "grouped_gflops_max": groupedRate.high,
                                    "sgemm_gflops_min": singleRate.low, "sgemm_gflops_max": singleRate.high,
                                    "peak_gflops": peak, "threads": context.threads])
            }
            report.printTable()
        }
    }
}
