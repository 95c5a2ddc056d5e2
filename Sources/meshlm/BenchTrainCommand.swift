import ArgumentParser
import Foundation
import Model
import Parallel
import Runtime
import Tensors
import Training

struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training throughput (tokens/s) and MFU of a model config, with a per-kernel breakdown of one step.",
        discussion: """
            Runs full training steps (forward, backward, gradient reduction, AdamW) on seeded random
            tokens, so no data is needed. Under mpirun the ranks are data parallel. MFU counts the
            FLOPs a step executes per token (linear layers and lm_head ×3, causal attention tiles
            as computed, no embedding FLOPs; docs/training.md) against the fp32 FMA peak of one
            core measured in the same run with the other ranks idle, times the cores in use
            (ranks × threads per rank).
            """)

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(help: "Model config.") var model = "configs/model/124m.yaml"
    @Option(parsing: .unconditional, help: "Sequence length.") var seqLen = 512
    @Option(parsing: .unconditional, help: "Sequences per rank per step.") var microBatch = 4
    @Option(parsing: .unconditional, help: "Timed steps (after one untimed warm-up step).") var steps = 3
    @Option(parsing: .unconditional, help: "ZeRO stage (0–3).") var zero = 0
    @Option(parsing: .unconditional, help: "Tensor-parallel degree (the rest of the ranks are data parallel).") var tp = 1
    @Option(parsing: .unconditional, help: "Pipeline-parallel degree.") var pp = 1
    @Option(parsing: .unconditional, help: "Model chunks per pipeline stage (> 1: the interleaved schedule).") var virtualStages = 1
    @Option(parsing: .unconditional, help: "Micro-batches per step per model replica (the pipeline's m).") var microBatches = 1
    @Option(help: "Freeze the tensors a name pattern matches (train.freeze; repeatable), e.g. 'model.layers.*'.")
    var freeze: [String] = []
    @Option(help: "LoRA adapters: a lora: section in YAML flow style (docs/training.md), e.g. '{r: 16, lora_alpha: 32, use_dora: true}'.")
    var lora: String?

    func run() throws {
        try job.runJob { context in
            let world = context.world, log = context.log
            printMachineReport(context, json: bench.json)
            let steps = bench.quick ? 1 : self.steps
            let dataDegree = max(world.size / max(tp * pp, 1), 1)
            let globalBatch = microBatch * microBatches * dataDegree
            let yaml = """
                model: \(model)
                run: {dir: /tmp/meshlm-bench-train}
                train: {steps: \(steps + 1), seq_len: \(seqLen), global_batch_size: \(globalBatch), micro_batch_size: \(microBatch),
                        freeze: [\(freeze.map { "'\($0)'" }.joined(separator: ", "))]}
                optimizer: {lr: 1.0e-4, warmup_steps: 0}
                data: {train: synthetic}
                parallel: {zero_stage: \(zero), tp: \(tp), pp: \(pp), virtual_stages: \(virtualStages)}
                \(lora.map { "lora: " + $0 } ?? "")
                """
            let (config, mesh) = try world.collectively {
                let config = try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: "bench train", includes: ["model"])
                let dims = try ParallelDims(worldSize: world.size, pipelineDegree: pp, dataDegree: nil, contextDegree: 1,
                                            tensorDegree: tp, expertDegree: 1)
                try ModelSplit.validate(config.model, on: dims, virtualStages: virtualStages)
                try ModelSplit.validatePipeline(microBatchCount: microBatches, stageCount: pp, virtualStages: virtualStages)
                return (config, try DeviceMesh(world: world, dims: dims))
            }
            let trainer = try world.collectively {
                try Trainer(config: config, mesh: mesh, threads: KernelThreads(count: context.threads), log: log)
            }
            // QLoRA (lora: {quantize_base: nf4}): the random base is quantized as a loaded one would be.
            trainer.parallelModel.quantizeBase(threads: trainer.model.threads)
            let peakPerCore = try CPUInfo.measureFMAPeakPerCore(world: world)
            let peak = peakPerCore * Double(world.size * context.threads)
            if !bench.json { log.info("bench train: \(config.model.parameterCount.formatted) parameters, \(world.size) rank(s) × \(context.threads) thread(s), "
                     + "batch \(globalBatch) × \(seqLen)\(lora.map { ", LoRA \($0)" } ?? ""), tp \(tp), pp \(pp)\(virtualStages > 1 ? " × \(virtualStages) virtual" : ""), ZeRO \(zero); peak \(String(format: "%.0f", peak)) GFLOP/s") }
            // One stream per model replica: the ranks of a tensor group see the same tokens.
            var generator = SplitMix64(seed: 42, stream: UInt64(mesh.dataContext.rank))
            func batch() -> [MicroBatch] {
                (0..<microBatches).map { _ in
                    let count = microBatch * seqLen
                    var tokens = [Int32](repeating: 0, count: count + 1)
                    for index in tokens.indices { tokens[index] = Int32(generator.next() % UInt64(config.model.vocabSize)) }
                    let positions = (0..<count).map { Int32($0 % seqLen) }
                    return MicroBatch(tokens: Array(tokens[..<count]), targets: Array(tokens[1...]), positions: positions, sequenceLength: seqLen)
                }
            }
            _ = try trainer.step(0, batches: batch())
            let profile = StepProfile()
            trainer.attach(profile)
            let exchange = trainer.model.regions as? TensorParallelExchange
            exchange?.seconds = 0
            var times: [Double] = []
            var waits: [Double] = [], optimizer: [Double] = [], bubbles: [Double] = [], pipelineWaits: [Double] = []
            var tokens = 0
            for step in 1...steps {
                try world.barrier()
                let result = try trainer.step(step, batches: batch())
                times.append(try world.allreduce(result.seconds, .max))
                waits.append(result.reductionWaitSeconds)
                optimizer.append(result.optimizerSeconds)
                pipelineWaits.append(result.pipelineWaitSeconds)
                // The stages' mean idle fraction of the step's forward/backward part.
                let busy = result.seconds - result.optimizerSeconds - result.reductionWaitSeconds
                bubbles.append(try world.allreduce(result.pipelineWaitSeconds / busy, .sum) / Double(world.size))
                tokens = result.tokens
            }
            times.sort()
            let median = times[times.count / 2]
            let rate = Double(tokens) / median
            let mfu = rate * trainer.flopsPerToken / (peak * 1e9)
            var report = BenchReport(bench: "train", columns: ["part", "ms per step", "share of step"], json: bench.json, log: log)
            let kernelSeconds = profile.totalSeconds / Double(steps)
            for kernel in StepProfile.Kernel.allCases {
                for direction in StepProfile.Direction.allCases {
                    let key = StepProfile.Key(kernel: kernel, direction: direction)
                    guard let seconds = profile.seconds[key] else { continue }
                    let perStep = seconds / Double(steps)
                    report.add(cells: ["\(kernel.rawValue).\(direction.rawValue)", String(format: "%.1f", perStep * 1e3),
                                       String(format: "%.1f%%", 100 * perStep / median)],
                               fields: ["part": "\(kernel.rawValue).\(direction.rawValue)", "ms": perStep * 1e3, "fraction_of_step": perStep / median])
                }
            }
            let wait = waits.sorted()[waits.count / 2], update = optimizer.sorted()[optimizer.count / 2]
            report.add(cells: ["gradient reduction wait", String(format: "%.1f", wait * 1e3), String(format: "%.1f%%", 100 * wait / median)],
                       fields: ["part": "reduction_wait", "ms": wait * 1e3, "fraction_of_step": wait / median])
            report.add(cells: ["optimizer (norm, AdamW, gathers)", String(format: "%.1f", update * 1e3), String(format: "%.1f%%", 100 * update / median)],
                       fields: ["part": "optimizer", "ms": update * 1e3, "fraction_of_step": update / median])
            let tensorCommunication = (exchange?.seconds ?? 0) / Double(steps)
            if exchange != nil {
                report.add(cells: ["tensor-parallel all-reduces", String(format: "%.1f", tensorCommunication * 1e3),
                                   String(format: "%.1f%%", 100 * tensorCommunication / median)],
                           fields: ["part": "tensor_parallel_allreduce", "ms": tensorCommunication * 1e3,
                                    "fraction_of_step": tensorCommunication / median])
            }
            let pipelineWait = pipelineWaits.sorted()[pipelineWaits.count / 2]
            let bubble = bubbles.sorted()[bubbles.count / 2]
            let theoretical = PipelineSchedule.theoreticalBubble(stageCount: pp, chunkCount: virtualStages, microBatchCount: microBatches)
            if pp > 1 {
                report.add(cells: ["pipeline wait (this rank)", String(format: "%.1f", pipelineWait * 1e3),
                                   String(format: "%.1f%%", 100 * pipelineWait / median)],
                           fields: ["part": "pipeline_wait", "ms": pipelineWait * 1e3, "fraction_of_step": pipelineWait / median,
                                    "bubble_measured": bubble, "bubble_theoretical": theoretical])
            }
            let other = median - kernelSeconds - wait - update - tensorCommunication - pipelineWait
            report.add(cells: ["other (hooks, data, loss)", String(format: "%.1f", other * 1e3), String(format: "%.1f%%", 100 * other / median)],
                       fields: ["part": "other", "ms": other * 1e3, "fraction_of_step": other / median])
            report.add(cells: ["step (median of \(steps))", String(format: "%.1f", median * 1e3), "100%"],
                       fields: ["part": "step", "ms": median * 1e3, "tokens_per_s": rate, "mfu": mfu, "peak_gflops": peak,
                                "peak_gflops_per_core": peakPerCore, "flops_per_token": trainer.flopsPerToken,
                                "ranks": world.size, "threads": context.threads, "parameters": config.model.parameterCount,
                                "seq_len": seqLen, "global_batch": globalBatch, "zero_stage": zero, "tp": tp, "pp": pp,
                                "virtual_stages": virtualStages, "micro_batches": microBatches,
                                "step_ms_min": times[0] * 1e3, "step_ms_max": times[times.count - 1] * 1e3])
            report.printTable()
            guard !bench.json else { return }
            if pp > 1 {
                log.info(String(format: "bench train: pipeline bubble %.1f%% measured (mean over stages of receive waits / forward-backward time), %.1f%% theoretical (p − 1) / (v·m + p − 1) with p %d, v %d, m %d",
                                100 * bubble, 100 * theoretical, pp, virtualStages, microBatches))
            }
            log.info(String(format: "bench train: %.1f tokens/s, MFU %.1f%% (step %.0f ms median, range %.0f–%.0f ms over %d steps)",
                            rate, 100 * mfu, median * 1e3, times[0] * 1e3, times[times.count - 1] * 1e3, steps))
            // Resident weights: the f32 arena, less QLoRA's released pages, plus its NF4 copies.
            let memory = trainer.parameters.residentBytes
            let quantized = trainer.parallelModel.quantizedBase
            let weights = memory.parameters - trainer.parallelModel.releasedBaseBytes + (quantized?.byteCount ?? 0)
            let rss = try world.allgather([currentResidentMegabytes(), peakResidentMegabytes()])
            log.info(String(format: "bench train: memory per rank: resident weights %.1f MB (f32 arena %.1f MB%@), gradients %.1f MB, optimizer state %.1f MB; RSS after the steps %@ MB, peak RSS %@ MB",
                            Double(weights) / 1e6, Double(memory.parameters) / 1e6,
                            quantized.map { String(format: ", %.1f MB of it released, NF4 %.1f MB", Double(trainer.parallelModel.releasedBaseBytes) / 1e6, Double($0.byteCount) / 1e6) } ?? "",
                            Double(memory.gradients) / 1e6, Double(memory.optimizerState) / 1e6,
                            rss.map { String(format: "%.0f", $0[0]) }.joined(separator: ", "), rss.map { String(format: "%.0f", $0[1]) }.joined(separator: ", ")))
        }
    }
}
