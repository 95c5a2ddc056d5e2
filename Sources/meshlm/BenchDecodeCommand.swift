import ArgumentParser
import Foundation
import Model
import Runtime
import Serving
import Tensors

struct BenchDecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode tokens/s at batch 1 against the STREAM bound, and throughput and latency at N concurrent requests.",
        discussion: """
            Batch 1: the time per generated token after the first (prefill excluded), against the
            bound of streaming every weight but the embedding table once per token at the STREAM
            triad bandwidth measured in the same run. Concurrency N: N requests submitted at once
            to the engine (in process, no HTTP), throughput = generated tokens / wall time, and
            p50/p99 time to first token and inter-token latency. Random weights unless
            --checkpoint is given. tools/bench-serve.sh adds PyTorch generate as a peer.
            Under mpirun -np N the model is split over the N ranks (tensor parallelism, as
            `meshlm serve` does); rank 0 measures, and the STREAM bound stays one rank's.
            """)

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(help: "Model config YAML (Hugging Face field names) for random weights.") var model = "configs/model/124m.yaml"
    @Option(help: "A checkpoint instead of random weights.") var checkpoint: String?
    @Option(parsing: .unconditional, help: "Prompt tokens per request.") var promptTokens = 16
    @Option(parsing: .unconditional, help: "Tokens generated per request.") var tokens = 128
    @Option(parsing: .upToNextOption, help: "Concurrent request counts to measure (1 is always measured).") var concurrency: [Int] = [8, 32]
    @Option(parsing: .unconditional, help: "Tokens computed per engine step.") var tokenBudget = 512
    @Option(parsing: .unconditional, help: "Also measure greedy speculative decoding at batch 1 with a draft of the target's first N layers (0 = skip).")
    var draftLayers = 0
    @Option(help: "Also measure greedy speculative decoding at batch 1 with this draft checkpoint (same vocabulary as --checkpoint).")
    var draftCheckpoint: String?
    @Option(parsing: .upToNextOption, help: "Draft tokens proposed per target forward (several values: one row each).") var lookahead: [Int] = [4]
    @Option(help: "Speculative decoding: prompts from this text file, one per line, encoded with the checkpoint's tokenizer (default: --prompts random prompts of --prompt-tokens ids).")
    var promptFile: String?
    @Option(parsing: .unconditional, help: "Speculative decoding: random prompts measured when there is no --prompt-file.") var prompts = 4
    @Option(parsing: .unconditional, help: "Also measure N synthetic LoRA adapters served unmerged (as `serve --lora`), requests spread across them, against the base alone in the same run (0 = skip).")
    var loraAdapters = 0
    @Option(parsing: .unconditional, help: "Rank of the --lora-adapters adapters (every projection of every layer adapted).") var loraRank = 16
    @Option(parsing: .upToNextOption, help: "Compare weight formats on the same weights, measured alternately (f32 q8_0 q4_0; quantized in process, the head in q8_0) instead of the f32 table.")
    var formats: [DecodeWeightFormat] = []

    func validate() throws {
        if let bad = lookahead.first(where: { !(1..<SmallBatchLinear.maximumRows).contains($0) }) {
            throw ValidationError("--lookahead must be in 1...\(SmallBatchLinear.maximumRows - 1), got \(bad)")
        }
        if draftLayers > 0 && draftCheckpoint != nil {
            throw ValidationError("give either --draft-layers or --draft-checkpoint, not both")
        }
        if prompts < 1 { throw ValidationError("--prompts must be at least 1, got \(prompts)") }
        if loraAdapters < 0 { throw ValidationError("--lora-adapters must be at least 0, got \(loraAdapters)") }
        if loraRank < 1 { throw ValidationError("--lora-rank must be at least 1, got \(loraRank)") }
    }

    func run() throws {
        try job.runJob { context in
            printMachineReport(context, json: bench.json)
            let threads = KernelThreads(count: context.threads)
            let world = context.world
            let weights: InferenceWeights = try world.collectively {
                guard world.size == 1 || (draftLayers == 0 && draftCheckpoint == nil) else {
                    throw JobError("--draft-layers and --draft-checkpoint (speculative decoding) run on one rank; drop them or start without mpirun -np \(world.size)")
                }
                guard world.size == 1 || loraAdapters == 0 else {
                    throw JobError("--lora-adapters (adapters served unmerged) runs on one rank; drop it or start without mpirun -np \(world.size)")
                }
                let split = world.size > 1 ? (world.size, world.rank) : nil
                if let checkpoint { return try InferenceWeights.load(checkpoint: checkpoint, tensorParallel: split) }
                let config = try ConfigLoader.load(LlamaConfig.self, path: model)
                guard let split else { return InferenceWeights.random(config: config, seed: 1) }
                return InferenceWeights.random(tensorParallel: try InferenceWeights.tensorParallelLayout(
                    config: config, degree: split.0, rank: split.1, source: model), seed: 1)
            }
            let tensorGroup = weights.tensorParallel.map { InferenceTensorGroup(communicator: world, layout: $0) }
            let config = weights.config
            guard promptTokens >= 1, self.tokens >= 2, promptTokens + self.tokens <= config.maxPositionEmbeddings else {
                throw JobError("--prompt-tokens \(promptTokens) (≥ 1) plus --tokens \(self.tokens) (≥ 2) must fit max_position_embeddings \(config.maxPositionEmbeddings)")
            }
            let tokens = bench.quick ? Swift.min(self.tokens, 32) : self.tokens
            let repeats = bench.quick ? 1 : bench.repeats
            let time = { (body: () -> Void) in Timing.measure(repeats: 3, minimumSeconds: 0.2, body) }
            // Followers run rank 0's engines (one per measurement) and measure nothing.
            if let tensorGroup, !tensorGroup.isLeader {
                for users in [1] + concurrency.filter({ $0 > 1 }) {
                    for _ in 0..<repeats {
                        let engine = Engine(weights: weights, configuration: engineConfiguration(users: users, tokens: tokens),
                                            tokenizer: nil, threads: threads, tensorGroup: tensorGroup)
                        engine.model.follow(cache: engine.cache)
                    }
                }
                return
            }
            let stream = StreamBandwidth.measure(elements: 1 << 24, threads: threads, time: time)
            if !formats.isEmpty {
                guard world.size == 1, !weights.isQuantized else {
                    throw JobError("--formats quantizes f32 weights on one rank: give an f32 checkpoint (or none) and start without mpirun")
                }
                try measureFormats(formats, weights: weights, tokens: tokens, repeats: repeats, threads: threads,
                                   stream: stream.triad, json: bench.json, log: context.log)
                return
            }
            // Per token every matrix is read once; the embedding table only for one row.
            // A quantized checkpoint's blocks are fewer bytes (one rank's, without tensor parallelism).
            let streamedBytes = weights.isQuantized && world.size == 1 ? Double(weights.bytesReadPerToken)
                : Double(config.parameterCount - (config.tieWordEmbeddings ? 0 : config.vocabSize * config.hiddenSize)) * 4
            let bound = stream.triad * 1e9 / streamedBytes
            if !bench.json {
                if world.size > 1 {
                    context.log.info("tensor parallel over \(world.size) ranks: each holds 1/\(world.size) of the heads, MLP and vocabulary; the bound below is one rank streaming the whole model")
                }
                context.log.info(String(format: "model %.1fM parameters, %.0f MB streamed per decode token; STREAM triad %.1f GB/s → bound %.1f tok/s (%d thread%@)",
                                        Double(config.parameterCount) / 1e6, streamedBytes / 1e6, stream.triad, bound,
                                        context.threads, context.threads == 1 ? "" : "s"))
            }
            var report = BenchReport(bench: "decode",
                                     columns: ["concurrency", "tok/s", "of STREAM bound", "vs batch 1", "TTFT p50/p99 ms", "ITL p50/p99 ms"],
                                     json: bench.json, log: context.log)
            var single: Double = 0
            for users in [1] + concurrency.filter({ $0 > 1 }) {
                var samples: [LoadSample] = []
                for _ in 0..<repeats {
                    samples.append(try measureLoad(weights: weights, users: users, tokens: tokens, threads: threads,
                                                   tensorGroup: tensorGroup))
                }
                samples.sort { $0.tokensPerSecond < $1.tokensPerSecond }
                let median = samples[samples.count / 2]
                if users == 1 { single = median.decodeTokensPerSecond }
                let rate = users == 1 ? median.decodeTokensPerSecond : median.tokensPerSecond
                report.add(cells: ["\(users)", String(format: "%.1f", rate),
                                   users == 1 ? String(format: "%.0f%%", 100 * rate / bound) : "",
                                   String(format: "%.2f×", rate / single),
                                   String(format: "%.1f / %.1f", median.ttft.p50 * 1e3, median.ttft.p99 * 1e3),
                                   String(format: "%.2f / %.2f", median.itl.p50 * 1e3, median.itl.p99 * 1e3)],
                           fields: ["concurrency": users, "tokens_per_s": rate, "stream_gb_per_s": stream.triad,
                                    "stream_bound_tokens_per_s": bound, "fraction_of_stream": users == 1 ? rate / bound : 0,
                                    "speedup_vs_batch1": rate / single, "ttft_p50_ms": median.ttft.p50 * 1e3,
                                    "ttft_p99_ms": median.ttft.p99 * 1e3, "itl_p50_ms": median.itl.p50 * 1e3,
                                    "itl_p99_ms": median.itl.p99 * 1e3, "threads": context.threads,
                                    "tensor_parallel": world.size,
                                    "prompt_tokens": promptTokens, "generated_tokens": tokens])
            }
            report.printTable()
            if loraAdapters > 0 {
                try measureAdapters(weights: weights, tokens: tokens, repeats: repeats, threads: threads, json: bench.json, log: context.log)
            }
            let draft: (weights: InferenceWeights, name: String)?
            if let draftCheckpoint {
                // The decoder drives whole models on one rank.
                guard context.world.size == 1 else {
                    throw JobError("--draft-checkpoint (speculative decoding) runs on one rank; drop it or start without mpirun -np \(context.world.size)")
                }
                let draftWeights = try InferenceWeights.load(checkpoint: draftCheckpoint)
                try SpeculativeDecoder.checkDraft(target: weights, targetTokenizer: try benchTokenizer(checkpoint).identity,
                                                  targetSource: checkpoint ?? model, draft: draftWeights,
                                                  draftTokenizer: try benchTokenizer(draftCheckpoint).identity, draftSource: draftCheckpoint)
                draft = (draftWeights, String(format: "%d layers, %.1fM", draftWeights.config.numHiddenLayers,
                                              Double(draftWeights.config.parameterCount) / 1e6))
            } else if draftLayers > 0 {
                draft = (weights.truncated(layers: draftLayers), "first \(draftLayers) layers")
            } else {
                draft = nil
            }
            if let draft {
                try measureSpeculative(target: weights, draft: draft.weights, draftName: draft.name,
                                       prompts: try speculativePrompts(weights: weights), tokens: tokens, repeats: repeats,
                                       threads: threads, json: bench.json, log: context.log)
            }
        }
    }

    struct LoadSample {
        var tokensPerSecond: Double
        /// Batch 1: generated tokens after the first over the time after the first.
        var decodeTokensPerSecond: Double
        var ttft: (p50: Double, p99: Double)
        var itl: (p50: Double, p99: Double)
    }

    func engineConfiguration(users: Int, tokens: Int) -> EngineConfiguration {
        EngineConfiguration(blockCount: users * ((promptTokens + tokens) / 16 + 2), blockSize: 16,
                            maximumBatch: users, tokenBudget: Swift.max(tokenBudget, users))
    }

    /// - Parameters:
    ///   - adapters: served LoRA adapters the engine holds.
    ///   - spreading: whether request i uses adapter i mod N (else every request uses the base).
    func measureLoad(weights: InferenceWeights, users: Int, tokens: Int, threads: KernelThreads,
                     tensorGroup: InferenceTensorGroup?, adapters: [ServedAdapter] = [], spreading: Bool = false) throws -> LoadSample {
        let engine = Engine(weights: weights, configuration: engineConfiguration(users: users, tokens: tokens), tokenizer: nil,
                            threads: threads, tensorGroup: tensorGroup, adapters: adapters)
        // The followers leave this engine's loop when it is done.
        defer { tensorGroup?.stopFollowers() }
        var generator = SplitMix64(seed: 7)
        let start = monotonicSeconds()
        for user in 0..<users {
            let prompt = (0..<promptTokens).map { _ in Int32(generator.next() % UInt64(weights.config.vocabSize)) }
            var parameters = SamplingParameters.greedy(maxTokens: tokens)
            parameters.ignoreEOS = true
            try engine.add(prompt: prompt, parameters: parameters, adapter: spreading && !adapters.isEmpty ? user % adapters.count : nil)
        }
        var firstTimes: [Int: Double] = [:], lastTimes: [Int: Double] = [:]
        var gaps: [Double] = []
        var generated = 0
        while engine.hasWork {
            let outputs = engine.step()
            let now = monotonicSeconds()
            for output in outputs where output.token != nil {
                generated += 1
                if let last = lastTimes[output.requestID] { gaps.append(now - last) } else { firstTimes[output.requestID] = now }
                lastTimes[output.requestID] = now
            }
        }
        let end = monotonicSeconds()
        let ttfts = firstTimes.values.map { $0 - start }.sorted()
        gaps.sort()
        func percentile(_ values: [Double], _ fraction: Double) -> Double {
            values.isEmpty ? 0 : values[Swift.min(values.count - 1, Int(Double(values.count) * fraction))]
        }
        let firstToken = firstTimes.values.max() ?? start
        return LoadSample(tokensPerSecond: Double(generated) / (end - start),
                          decodeTokensPerSecond: Double(generated - users) / Swift.max(end - firstToken, 1e-9),
                          ttft: (percentile(ttfts, 0.5), percentile(ttfts, 0.99)),
                          itl: (percentile(gaps, 0.5), percentile(gaps, 0.99)))
    }
}
