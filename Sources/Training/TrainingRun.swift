import Foundation
import Runtime

/// The loop around `Trainer`, the same for every mode: steps, stop signals, periodic logging to
/// `RUN/metrics.jsonl` (with the objective's own metrics, by name) and the progress line,
/// periodic evaluation, checkpoints, and the end-of-run summary.
public struct TrainingRun {
    public let trainer: Trainer
    /// The mode's name in progress lines and logs (`pretrain`, `sft`, …).
    public let label: String
    public let trainBatches: BatchSource
    public let evalBatches: BatchSource?
    public let metrics: MetricsLog
    public let log: Log
    /// The fp32 FMA peak of all ranks together (GFLOP/s), measured at start-up, for MFU.
    public let peakGigaflops: Double
    /// Saves checkpoints (async by default); nil saves them with no extra files.
    public var checkpoints: CheckpointSaver?
    /// Evaluate before the first step of a fresh run too (TRL's `eval_on_start`), logged with
    /// `"eval_on_start": true` at that step: the figures of the starting model.
    public var evaluatesAtStart = false
    /// Called after every step with its figures (e.g. to watch a metric's trend).
    public var observer: ((StepResult) -> Void)?

    public init(trainer: Trainer, label: String, trainBatches: BatchSource, evalBatches: BatchSource?, metrics: MetricsLog, log: Log,
                peakGigaflops: Double) {
        self.trainer = trainer
        self.label = label
        self.trainBatches = trainBatches
        self.evalBatches = evalBatches
        self.metrics = metrics
        self.log = log
        self.peakGigaflops = peakGigaflops
    }

    /// What the run ended with.
    public struct Summary: Sendable {
        public var steps: Int
        public var firstLoss: Double
        public var lastLoss: Double
        public var lastEvalLoss: Double?
        public var tokensPerSecond: Double
        public var mfu: Double
        /// Whether a stop signal ended the run before its last step.
        public var stoppedEarly = false
    }

    /// Trains from step `start` to the end (or `train.stop_at_step`) and returns the summary.
    public func run(from start: Int = 0) throws -> Summary {
        let train = trainer.config.train
        let end = train.stopAtStep > 0 ? train.stopAtStep : train.steps
        let progress = ProgressLine(label: label, total: end - start, unit: "steps", log: log)
        var summary = Summary(steps: 0, firstLoss: .nan, lastLoss: .nan, lastEvalLoss: nil, tokensPerSecond: 0, mfu: 0)
        var intervalTokens = 0, intervalSeconds = 0.0, totalTokens = 0, totalSeconds = 0.0
        StopSignals.install()
        let saver = checkpoints ?? CheckpointSaver(trainer: trainer, extras: CheckpointExtras())
        if evaluatesAtStart, start == 0, let evalBatches, train.evalInterval > 0 {
            let evaluation = try evaluate(evalBatches)
            try log(evaluation, step: start, atStart: true)
        }
        for step in start..<end {
            // An asynchronous save commits at the first step boundary after every rank wrote its file.
            if let path = try saver.commitIfReady() { log.info("checkpoint \(path) committed") }
            // A stop request on any rank (SIGTERM/SIGUSR1 from Slurm or mpirun) ends every rank
            // at the same step, after saving a checkpoint to resume from.
            let stopRequested = try trainer.worldCommunicator.allreduce(Int32(StopSignals.requested == nil ? 0 : 1), .max) == 1
            if stopRequested {
                let path = try saver.save(nextStep: step) ?? saver.finish() ?? trainer.checkpointDirectory
                log.info("\(label): \(StopSignals.requested ?? "a stop signal") received; saved \(path) and stopping before step \(step)")
                summary.stoppedEarly = true
                break
            }
            let result = try trainer.step(step, batches: try trainBatches.microBatches(step: step))
            observer?(result)
            if summary.firstLoss.isNaN { summary.firstLoss = result.loss }
            summary.lastLoss = result.loss
            summary.steps += 1
            intervalTokens += result.tokens
            intervalSeconds += result.seconds
            // The first step pays for page faults and warm caches; keep it out of the totals.
            if step > start || end - start == 1 {
                totalTokens += result.tokens
                totalSeconds += result.seconds
            }
            let isLast = step == end - 1
            if step % train.logInterval == 0 || isLast {
                let rate = Double(intervalTokens) / max(intervalSeconds, 1e-9)
                let mfu = rate * trainer.flopsPerToken / (peakGigaflops * 1e9)
                let rss = try trainer.worldCommunicator.allgather([peakResidentMegabytes()]).map { $0[0] }
                var line = JSONLine()
                line.add("step", step)
                line.add("loss", result.loss)
                line.add("lr", result.learningRate)
                line.add("grad_norm", result.gradientNorm)
                for name in trainer.objective.metricNames + trainer.modelMetricNames { line.add(name, result.metrics[name] ?? 0) }
                line.add("tokens_per_s", rate)
                line.add("mfu", mfu)
                line.add("peak_rss_mb", rss.max() ?? 0)
                line.add("peak_rss_mb_per_rank", rss)
                try metrics.write(line)
                log.info(String(format: "step %5d  loss %.4f  lr %.3e  grad_norm %.3f  %@ tok/s  mfu %.1f%%",
                                step, result.loss, result.learningRate, result.gradientNorm, formatRate(rate), 100 * mfu))
                intervalTokens = 0
                intervalSeconds = 0
            }
            let interval = trainer.config.checkpoint.interval
            if (interval > 0 && (step + 1) % interval == 0) || (isLast && (interval > 0 || train.stopAtStep > 0)) {
                if let path = try saver.save(nextStep: step + 1) {
                    log.info("step \(step)  checkpoint \(path)")
                } else {
                    log.info("step \(step)  checkpoint of step \(step + 1) writing in the background")
                }
            }
            if let evalBatches, train.evalInterval > 0, step % train.evalInterval == 0 || isLast {
                let evaluation = try evaluate(evalBatches)
                summary.lastEvalLoss = evaluation.loss
                try log(evaluation, step: step, atStart: false)
            }
            progress.advance()
        }
        // The end of the run (and a stop) waits for the save in flight.
        if let path = try saver.finish() { log.info("checkpoint \(path) committed") }
        progress.finish()
        summary.tokensPerSecond = Double(totalTokens) / max(totalSeconds, 1e-9)
        summary.mfu = summary.tokensPerSecond * trainer.flopsPerToken / (peakGigaflops * 1e9)
        return summary
    }

    /// Writes an evaluation to the metrics log and the log: `eval_loss`, and the objective's
    /// metrics as TRL logs them on evaluation (`eval_` + the name).
    private func log(_ evaluation: Trainer.Evaluation, step: Int, atStart: Bool) throws {
        var line = JSONLine()
        line.add("step", step)
        if atStart { line.add("eval_on_start", true) }
        line.add("eval_loss", evaluation.loss)
        for name in trainer.objective.metricNames { line.add("eval_" + name, evaluation.metrics[name] ?? 0) }
        try metrics.write(line)
        log.info(String(format: "step %5d  %@eval_loss %.4f", step, atStart ? "(before training) " : "", evaluation.loss)
                 + trainer.objective.metricNames.map { String(format: "  eval_%@ %.4f", $0, evaluation.metrics[$0] ?? 0) }.joined())
    }

    /// The eval loss and metrics over the first `train.eval_batches` batches of the eval data
    /// (same batches every time, in order).
    private func evaluate(_ source: BatchSource) throws -> Trainer.Evaluation {
        var batches: [MicroBatch] = []
        for index in 0..<trainer.config.train.evalBatches { batches += try source.microBatches(step: index) }
        return try trainer.evaluate(batches)
    }
}
