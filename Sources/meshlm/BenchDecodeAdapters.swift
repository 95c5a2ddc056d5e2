import Foundation
import Model
import Runtime
import Serving
import Tensors

/// `bench decode --lora-adapters N`: the engine serving N LoRA adapters unmerged against the
/// base alone, on the same prompts, in the same run.
extension BenchDecodeCommand {
    /// N random adapters of rank `--lora-rank` on every projection of every layer (PEFT's
    /// `all-linear`), alpha = 2r. The values do not change the work, only the tokens.
    func syntheticAdapters(config: LlamaConfig) throws -> [ServedAdapter] {
        let lora = LoRAConfig(rank: loraRank, alpha: Double(2 * loraRank))
        return try (0..<loraAdapters).map { index in
            var generator = SplitMix64(seed: 100 + UInt64(index))
            return try ServedAdapter(name: "adapter\(index)", root: "synthetic", lora: lora, base: config, source: "synthetic") { name in
                let isA = name.hasSuffix(".lora_A.weight")
                let projection = Projection.allCases.first { name.contains("." + $0.moduleName + ".") }!
                let (output, input) = projection.shape(config)
                let shape = isA ? [loraRank, input] : [output, loraRank]
                return (shape, (0..<shape[0] * shape[1]).map { _ in 0.02 * generator.nextNormal() })
            }
        }
    }

    /// One table: per concurrency, tokens/s of the base alone, of the base with the adapters
    /// loaded but no request naming one (the base path's cost of holding them), and of requests
    /// spread over the N adapters (request i uses adapter i mod N), with the ratios to the base.
    /// The three take turns within each repeat, so a noisy moment hits them all alike; medians.
    func measureAdapters(weights: InferenceWeights, tokens: Int, repeats: Int, threads: KernelThreads, json: Bool, log: Log) throws {
        let adapters = try syntheticAdapters(config: weights.config)
        var report = BenchReport(bench: "decode-lora",
                                 columns: ["concurrency", "adapters", "rank", "base tok/s", "loaded, unused tok/s", "spread tok/s",
                                           "unused / base", "spread / base"],
                                 json: json, log: log)
        for users in [1] + concurrency.filter({ $0 > 1 }) {
            var base: [Double] = [], unused: [Double] = [], spread: [Double] = []
            for _ in 0..<repeats {
                func rate(_ sample: LoadSample) -> Double { users == 1 ? sample.decodeTokensPerSecond : sample.tokensPerSecond }
                base.append(rate(try measureLoad(weights: weights, users: users, tokens: tokens, threads: threads, tensorGroup: nil)))
                unused.append(rate(try measureLoad(weights: weights, users: users, tokens: tokens, threads: threads, tensorGroup: nil,
                                                   adapters: adapters)))
                spread.append(rate(try measureLoad(weights: weights, users: users, tokens: tokens, threads: threads, tensorGroup: nil,
                                                   adapters: adapters, spreading: true)))
            }
            func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
            let (b, u, s) = (median(base), median(unused), median(spread))
            report.add(cells: ["\(users)", "\(adapters.count)", "\(loraRank)", String(format: "%.1f", b), String(format: "%.1f", u),
                               String(format: "%.1f", s), String(format: "%.3f", u / b), String(format: "%.3f", s / b)],
                       fields: ["concurrency": users, "adapters": adapters.count, "rank": loraRank, "base_tokens_per_s": b,
                                "unused_tokens_per_s": u, "spread_tokens_per_s": s, "unused_over_base": u / b,
                                "spread_over_base": s / b, "repeats": repeats, "threads": threads.count,
                                "prompt_tokens": promptTokens, "generated_tokens": tokens])
        }
        report.printTable()
    }
}
