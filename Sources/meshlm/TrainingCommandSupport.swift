import Checkpoint
import Foundation
import Model
import Parallel
import Runtime
import Training

/// What every training command (`pretrain`, `sft`, …) does the same way around its own data
/// and objective: build the mesh, decide the starting step, and report the run.
enum TrainingCommandSupport {
    /// The device mesh the run config asks for, checked against the model and the batch.
    static func mesh(_ settings: PretrainConfig, world: Communicator) throws -> DeviceMesh {
        let parallel = settings.parallel
        let dims = try ParallelDims(worldSize: world.size, pipelineDegree: parallel.pp,
                                    dataDegree: parallel.dp == 0 ? nil : parallel.dp, contextDegree: parallel.cp,
                                    tensorDegree: parallel.tp, expertDegree: parallel.ep)
        try ModelSplit.validate(settings.model, on: dims, virtualStages: parallel.virtualStages)
        let mesh = try DeviceMesh(world: world, dims: dims)
        let train = settings.train
        let degree = mesh.dataContext.size
        if train.globalBatchSize % (degree * train.microBatchSize) == 0 {
            try ModelSplit.validatePipeline(microBatchCount: train.globalBatchSize / (degree * train.microBatchSize),
                                            stageCount: parallel.pp, virtualStages: parallel.virtualStages)
        }
        return mesh
    }

    /// The step to start at: 0 from `initFrom`'s parameters, a named checkpoint's step, or the
    /// run's own newest checkpoint (`resume` requires one).
    static func startStep(_ trainer: Trainer, initFrom: String?, resumeFrom: String?, resume: Bool, label: String, log: Log) throws -> Int {
        if let initFrom {
            try trainer.initialize(from: initFrom)
            log.info("\(label): starting from the parameters of \(initFrom)")
            return 0
        }
        if let resumeFrom {
            guard let step = try trainer.resume(from: resumeFrom) else { throw JobError("--resume-from: no committed checkpoint at \(resumeFrom): \(CheckpointReader.acceptedForms)") }
            return step
        }
        let step = try trainer.resumeFromLatest()
        if resume && step == nil { throw JobError("--resume: \(trainer.checkpointDirectory) holds no loadable checkpoint") }
        if step == nil, let format = trainer.config.lora?.quantizeBase {
            // QLoRA quantizes a loaded base; a random one has no checkpoint to resume it from.
            throw JobError("lora.quantize_base \(format.rawValue) quantizes a pretrained base: start with --init-from CHECKPOINT (or drop quantize_base to train LoRA over a fresh model)")
        }
        return step ?? 0
    }

    /// The checkpoint a fine-tuning run starts from (`given`; a run directory stands for its
    /// checkpoints). A checkpoint with LoRA adapters (a LoRA run's, or a PEFT adapter imported)
    /// continues them: `settings.lora` becomes its adapter_config.json's when the config has none.
    static func fineTuningSource(_ given: String, settings: inout PretrainConfig, label: String, log: Log) throws -> String {
        let source = SFTChatSetup.checkpointSource(given)
        let configured = settings.lora
        settings.lora = try PeftAdapter.continuing(configured, from: CheckpointReader.locate(source))
        if configured == nil, let lora = settings.lora {
            log.info("\(label): training the adapters of \(source) further (r \(lora.rank), lora_alpha \(lora.alpha), \(lora.targets.map(\.moduleName).joined(separator: ", ")), from its adapter_config.json)")
        }
        return source
    }

    /// A fine-tuning run's first step: the run's own newest checkpoint if it has one (`resume`
    /// requires one), else step 0 from the parameters of `source`. Collective.
    static func fineTuningStart(_ trainer: Trainer, source: String, resume: Bool, label: String, world: Communicator, log: Log) throws -> Int {
        try world.collectively {
            let resuming = try trainer.resumeFromLatest()
            if resume && resuming == nil { throw JobError("--resume: \(trainer.checkpointDirectory) holds no loadable checkpoint") }
            return try resuming ?? startStep(trainer, initFrom: source, resumeFrom: nil, resume: false, label: label, log: log)
        }
    }

    /// Trains a fine-tuning run (SFT, DPO, …) over packed rows: the train rows in the run's seeded
    /// order, the eval rows in order, checkpoints carrying the tokenizer and the chat template the
    /// rows were rendered with (what `generate` and `serve` prompt with).
    static func fineTune(_ trainer: Trainer, label: String, start: Int, train: any PackedRowSource, eval: (any PackedRowSource)?,
                         chat: SFTChatSetup, context: JobContext, configure: (inout TrainingRun) -> Void = { _ in }) throws {
        let settings = trainer.config, batch = settings.train
        let (degree, rank) = (trainer.communicator.size, trainer.communicator.rank)
        let trainBatches = PackedBatches(train, globalBatchSize: batch.globalBatchSize, microBatchSize: batch.microBatchSize,
                                         dataParallelDegree: degree, rank: rank, shuffle: settings.data.shuffle, seed: UInt64(batch.seed))
        let evalBatches = eval.map {
            PackedBatches($0, globalBatchSize: batch.globalBatchSize, microBatchSize: batch.microBatchSize,
                          dataParallelDegree: degree, rank: rank, shuffle: false, seed: 0)
        }
        var extras = try context.world.collectively {
            try CheckpointExtras(config: settings, tokenizer: chat.tokenizer.identity, tokenizerFile: chat.tokenizerFile)
        }
        extras.files["chat_template.jinja"] = Data(chat.template.utf8)
        try TrainingCommandSupport.train(trainer, label: label, start: start, trainBatches: trainBatches, evalBatches: evalBatches,
                                         extras: extras, context: context, configure: configure)
    }

    /// Trains from `start` to the run's end with `TrainingRun` — metrics log, the FMA peak for
    /// MFU, checkpoints carrying `extras` — and reports the run; `announce` logs the mode's own
    /// start line once the metrics file is open; `configure` sets a mode's own options of the run.
    static func train(_ trainer: Trainer, label: String, start: Int, trainBatches: BatchSource, evalBatches: BatchSource?,
                      extras: CheckpointExtras, context: JobContext, announce: (MetricsLog) -> Void = { _ in },
                      configure: (inout TrainingRun) -> Void = { _ in }) throws {
        let world = context.world, log = context.log, settings = trainer.config
        let end = settings.train.stopAtStep > 0 ? settings.train.stopAtStep : settings.train.steps
        if start > 0 { log.info("\(label): resuming at step \(start) from \(trainer.checkpointDirectory)") }
        guard start < end else {
            log.info("\(label): the run's checkpoint is at step \(start); nothing left to do before step \(end)")
            return
        }
        let metrics = try world.collectively { try MetricsLog(directory: settings.run.dir, rank: world.rank, resumingAt: start) }
        if metrics.droppedRows > 0 {
            log.info("\(label): dropped \(metrics.droppedRows) rows of metrics.jsonl logged after the checkpoint (steps ≥ \(start) run again)")
        }
        let cores = world.size * context.threads
        let peakPerCore = try CPUInfo.measureFMAPeakPerCore(world: world, seconds: 0.05)
        announce(metrics)
        var run = TrainingRun(trainer: trainer, label: label, trainBatches: trainBatches, evalBatches: evalBatches,
                              metrics: metrics, log: log, peakGigaflops: peakPerCore * Double(cores))
        run.checkpoints = CheckpointSaver(trainer: trainer, extras: extras)
        configure(&run)
        let summary = try run.run(from: start)
        try report(summary, trainer: trainer, world: world, cores: cores, peakPerCore: peakPerCore, label: label, log: log)
    }

    /// The end-of-run lines: losses, speed and MFU, then memory per rank.
    private static func report(_ summary: TrainingRun.Summary, trainer: Trainer, world: Communicator, cores: Int, peakPerCore: Double,
                       label: String, log: Log) throws {
        var line = String(format: "%@: %d steps, loss %.4f → %.4f", label, summary.steps, summary.firstLoss, summary.lastLoss)
        if let evalLoss = summary.lastEvalLoss { line += String(format: ", eval loss %.4f", evalLoss) }
        line += String(format: ", %@ tokens/s, MFU %.1f%% of %d core%@ × %.0f GFLOP/s", formatRate(summary.tokensPerSecond),
                       100 * summary.mfu, cores, cores == 1 ? "" : "s", peakPerCore)
        log.info(line)
        let memory = trainer.parameters.residentBytes
        let rss = try world.allgather([peakResidentMegabytes()]).map { $0[0] }
        // QLoRA: the arena's f32 projections are released and their NF4 copies held instead.
        let quantized = trainer.parallelModel.quantizedBase.map {
            String(format: " (%.1f MB of f32 projections released, NF4 base %.1f MB: weights %.1f MB)",
                   Double(trainer.parallelModel.releasedBaseBytes) / 1e6, Double($0.byteCount) / 1e6,
                   Double(memory.parameters - trainer.parallelModel.releasedBaseBytes + $0.byteCount) / 1e6)
        } ?? ""
        log.info(String(format: "memory per rank: parameters %.1f MB%@, gradients %.1f MB, optimizer state %.1f MB, "
                        + "block buffers (peak) %.1f MB; peak RSS per rank %@ MB",
                        Double(memory.parameters) / 1e6, quantized, Double(memory.gradients) / 1e6, Double(memory.optimizerState) / 1e6,
                        Double(trainer.parameters.peakBufferBytes) / 1e6, rss.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
    }
}
