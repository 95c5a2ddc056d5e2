import Foundation
import Model
import Parallel
import Runtime
import Tensors

/// Where a trainer's batches come from: this rank's micro-batches of each global step.
public protocol BatchSource {
    func microBatches(step: Int) throws -> [MicroBatch]
}

/// A training step's figures.
public struct StepResult: Sendable {
    public let step: Int
    public let loss: Double
    public let gradientNorm: Double
    public let learningRate: Double
    public let tokens: Int
    public let seconds: Double
    /// Waiting for gradient reductions after backward (what overlap did not hide).
    public let reductionWaitSeconds: Double
    /// Seconds this pipeline stage waited for activations or gradients (its bubble); 0 without
    /// pipeline parallelism.
    public let pipelineWaitSeconds: Double
    /// Gradient norm, clipping, AdamW and (ZeRO-1/2) the parameter all-gather.
    public let optimizerSeconds: Double
    /// The objective's metrics over the global batch (sum / count of each), by name.
    public let metrics: [String: Double]
}

/// One optimizer step of any training mode: data-parallel (and ZeRO), tensor- and
/// pipeline-parallel training of the Llama model towards a `TrainingObjective` (next-token
/// pretraining, masked fine-tuning, …), deterministic for a config and seed, equal across
/// layouts (DESIGN §3, §7). The loop around it is `TrainingRun`.
///
/// The model is laid over the mesh by `ParallelModel` (the one parallelize step).
///
/// One step: the global normalization (the objective's count over every rank's micro-batches),
/// then every micro-batch forward, the objective on its log-probabilities, and backward from
/// their gradients (gradients of Σ loss / global normalization accumulate; the parallel layer
/// reduces them across ranks as backward releases each block), then the global gradient norm,
/// clipping, and AdamW on this rank's share.
public final class Trainer {
    public let config: PretrainConfig
    /// What the step optimizes.
    public let objective: any TrainingObjective
    /// The data-parallel group (`data_context`): ranks holding the same model shard.
    public let communicator: Communicator
    /// The tensor-parallel group: the ranks of one model replica.
    public let tensorCommunicator: Communicator
    /// Every rank of the job (checkpoints are written by all of them).
    public let worldCommunicator: Communicator
    /// The pipeline group: the stages of one model replica.
    public let pipelineCommunicator: Communicator
    /// The model on this rank of the mesh (the one `parallelize` step).
    public let parallelModel: ParallelModel
    /// QLoRA: the step directory the f32 base was loaded from, which the run's checkpoints
    /// record instead of the quantized projections (`quantize_base`; see `stageCheckpoint`).
    public internal(set) var baseCheckpoint: String?
    /// The step directory this run resumed or initialized from, if any (its tokenizer is the
    /// one the run's data must have: `CheckpointTokenizer`).
    public internal(set) var loadedCheckpoint: String?
    var pipeline: PipelineRunner? { parallelModel.pipeline }
    var embeddingCommunicator: Communicator? { parallelModel.embeddingCommunicator }
    var holdsEmbeddingCopy: Bool { parallelModel.holdsEmbeddingCopy }
    public var tensorLayout: TensorParallelLayout { parallelModel.tensorLayout }
    /// The model (with pipeline parallelism: the first chunk's first activation slot).
    public var model: LlamaModel { parallelModel.model }
    public var parameters: DataParallelParameters { parallelModel.parameters }
    var access: any ParameterAccess { parallelModel.access }
    /// This rank's (local) parameter layout.
    public var layout: ParameterLayout { parallelModel.layout }
    private let schedule: LearningRateSchedule
    let log: Log
    /// A mixture-of-experts model's routing figures (nil for a dense model).
    let routerMetrics: RouterMetrics?
    /// Consecutive steps each layer's router has been collapsed, and the layers already warned
    /// about (once each).
    private var collapsedSteps: [Int: Int] = [:]
    private var collapseWarned: Set<Int> = []
    /// Steps a router must stay collapsed before the warning: early in training one expert may
    /// take nearly all of a layer's tokens for tens of steps (the tiny MoE of the quickstart:
    /// about 25, from step 10), which the balancing loss then undoes.
    static let collapseWarningSteps = 50
    /// The metric names beside the objective's that each logged step carries.
    public var modelMetricNames: [String] { routerMetrics == nil ? [] : RouterMetrics.names }

    public init(config: PretrainConfig, objective: any TrainingObjective = NextTokenObjective(), mesh: DeviceMesh,
                threads: KernelThreads, log: Log) throws {
        self.config = config
        self.objective = objective
        self.communicator = mesh.dataContext
        self.tensorCommunicator = mesh.tensor
        self.worldCommunicator = mesh.world
        self.pipelineCommunicator = mesh.pipeline
        self.log = log
        let train = config.train
        let shape = ParallelModel.Shape(microBatchSize: train.microBatchSize, sequenceLength: train.seqLen,
                                        microBatchCount: train.globalBatchSize / (train.microBatchSize * mesh.dataContext.size),
                                        recompute: train.recompute, documentMasking: train.documentMasking)
        parallelModel = try ParallelModel(config: config.model, shape: shape, parallel: config.parallel, mesh: mesh, threads: threads,
                                          frozen: try config.frozenTensors(), lora: config.lora, seed: UInt64(train.seed))
        schedule = config.optimizer.schedule(totalSteps: train.steps)
        routerMetrics = RouterMetrics(config.model)
    }

    /// Runs one optimizer step on `batches` (this rank's micro-batches) and returns its figures.
    public func step(_ step: Int, batches: [MicroBatch]) throws -> StepResult {
        let start = monotonicSeconds()
        try objective.prepare(batches, model: parallelModel, dataCommunicator: communicator)
        // The loss is a mean over the global batch: every rank scales by the same global count.
        let scales = try GlobalScales(objective, batches: batches, communicator: communicator, what: "step \(step)")
        let globalCount = scales.count
        var sums = ObjectiveSums(objective)
        // The router losses are means over the global batch's micro-batches.
        let microBatches = batches.count * communicator.size
        for model in parallelModel.models {
            model.routerLossScale = 1 / Float(microBatches)
            model.resetRouterTotals()
        }
        if let pipeline {
            try pipeline.run(batches: batches, parameters: parameters, access: access,
                             dropout: { self.adapterDropout(step: step, batch: $0) }) { model, batch, crossEntropy in
                let output = objective.evaluate(after: model, batch: batch, crossEntropy: crossEntropy, scales: scales)
                sums.add(output)
            }
        } else {
            for (index, batch) in batches.enumerated() {
                parameters.isLastMicroBatch = index == batches.count - 1
                model.adapterDropout = adapterDropout(step: step, batch: batch)
                let crossEntropy = batch.withPointers { tokens, targets, positions in
                    model.forward(tokens: tokens, targets: targets, positions: positions, parameters: access)
                }
                sums.add(objective.evaluate(after: model, batch: batch, crossEntropy: crossEntropy, scales: scales))
                model.backward(parameters: access)
            }
            model.adapterDropout = nil
        }
        let waitStart = monotonicSeconds()
        try parameters.finishBackward()
        if let embeddingCommunicator, layout.trains(.embedding) {
            try embeddingCommunicator.allreduce(parameters.reducedGradients(of: .embedding), .sum)
        }
        let reductionWait = monotonicSeconds() - waitStart
        // The last pipeline stage evaluated the objective; the others add 0.
        if pipeline != nil { try pipelineCommunicator.allreduce(&sums.values, .sum) }
        try communicator.allreduce(&sums.values, .sum)
        let loss = sums.lossSum / globalCount
        guard loss.isFinite else {
            throw CollectiveFailure.agreed("step \(step): the loss is \(loss); stopping (lower optimizer.lr, raise optimizer.warmup_steps, or check the data)")
        }
        let optimizerStart = monotonicSeconds()
        let norm = try gradientNorm()
        guard norm.isFinite else {
            throw CollectiveFailure.agreed("step \(step): the gradient norm is \(norm); stopping (lower optimizer.lr or enable optimizer.grad_clip)")
        }
        let clip = config.optimizer.gradClip
        let clipScale = clip > 0 && norm > clip ? Float(clip / (norm + 1e-6)) : 1
        let rate = schedule.rate(at: step)
        let settings = AdamW.Settings(learningRate: Float(rate), beta1: Float(config.optimizer.beta1), beta2: Float(config.optimizer.beta2),
                                      epsilon: Float(config.optimizer.eps), weightDecay: Float(config.optimizer.weightDecay))
        try parameters.step(settings: settings, stepNumber: step + 1, gradientScale: clipScale,
                            loraPlusRatio: Float(config.lora?.loraPlusRatio ?? 1))
        let tokens = batches.reduce(0) { $0 + $1.tokens.count } * communicator.size
        var metrics = sums.means
        if let routerMetrics {
            let (figures, loads) = try routerMetrics.reduce(parallelModel.models.map(\.routerTotals), microBatches: microBatches,
                                                            pipeline: pipeline == nil ? nil : pipelineCommunicator, data: communicator)
            metrics.merge(figures) { $1 }
            let collapsed = routerMetrics.collapsed(loads)
            collapsedSteps = Dictionary(uniqueKeysWithValues: collapsed.map { ($0.layer, (collapsedSteps[$0.layer] ?? 0) + 1) })
            for (layer, expert, share) in collapsed where collapsedSteps[layer] == Self.collapseWarningSteps && collapseWarned.insert(layer).inserted {
                log.warning(String(format: "step %d: layer %d's router has sent ≥ 90%% of its tokens to one expert for %d steps (now %.0f%% to expert %d): a collapsed router; raise model.router_aux_loss_coef, add model.router_z_loss_coef, or lower optimizer.lr",
                                   step, layer, Self.collapseWarningSteps, 100 * share, expert))
            }
        }
        let end = monotonicSeconds()
        return StepResult(step: step, loss: loss, gradientNorm: norm, learningRate: rate, tokens: tokens,
                          seconds: end - start, reductionWaitSeconds: reductionWait, pipelineWaitSeconds: pipeline?.waitSeconds ?? 0,
                          optimizerSeconds: end - optimizerStart, metrics: metrics)
    }

    /// The LoRA dropout masks `batch`'s training forward draws at `step` (nil without dropout):
    /// keyed by the run's seed, the step and the batch's global rows, so resuming and every
    /// layout draw the same.
    func adapterDropout(step: Int, batch: MicroBatch) -> AdapterDropoutDraw? {
        guard let lora = config.lora, lora.dropout > 0 else { return nil }
        return AdapterDropoutDraw(seed: UInt64(config.train.seed), step: step, firstRow: batch.firstRow)
    }

    /// What a forward-only pass of the objective over evaluation batches gives.
    public struct Evaluation: Sendable {
        /// Σ loss sums / the global normalization.
        public var loss: Double
        /// The objective's metrics over the batches (sum / count of each), by name.
        public var metrics: [String: Double]
    }

    /// The objective's mean loss and metrics over `batches` (this rank's share of the eval set),
    /// forward only: Σ loss sums / Σ normalizations over the global eval batches.
    public func evaluate(_ batches: [MicroBatch]) throws -> Evaluation {
        try objective.prepare(batches, model: parallelModel, dataCommunicator: communicator)
        let scales = try GlobalScales(objective, batches: batches, communicator: communicator, what: "evaluation")
        var sums = ObjectiveSums(objective)
        try parallelModel.forward(batches) { model, batch, crossEntropy in
            // The gradients are written but not used.
            sums.add(self.objective.evaluate(after: model, batch: batch, crossEntropy: crossEntropy, scales: scales))
        }
        if pipeline != nil { try pipelineCommunicator.allreduce(&sums.values, .sum) }
        try communicator.allreduce(&sums.values, .sum)
        return Evaluation(loss: sums.lossSum / scales.count, metrics: sums.means)
    }

    /// Times every kernel call of every model instance (pipeline stages hold several) into `profile`.
    public func attach(_ profile: StepProfile?) {
        for model in parallelModel.models { model.profile = profile }
    }

    /// The global L2 norm of the reduced gradients: each rank's share summed over the data group
    /// (ZeRO shards), the tensor group (tensor slices, replicated tensors counted once) and the
    /// pipeline group (each stage's layers).
    func gradientNorm() throws -> Double {
        guard tensorLayout.degree > 1 || pipeline != nil else { return try parameters.gradientNorm() }
        var sum = parameters.localSquaredGradientSum(counts: countsOnce)
        if parameters.stage != .none { sum = try communicator.allreduce(sum, .sum) }
        if tensorLayout.degree > 1 { sum = try tensorCommunicator.allreduce(sum, .sum) }
        if pipeline != nil { sum = try pipelineCommunicator.allreduce(sum, .sum) }
        return sum.squareRoot()
    }

    /// Whether this rank counts the tensor at local index `index` in global sums and saves it:
    /// one copy of each replicated tensor across the tensor group, and the first stage's
    /// embedding table only.
    func countsOnce(_ index: Int) -> Bool {
        tensorLayout.counts(index) && !(holdsEmbeddingCopy && layout.entries[index].block == .embedding)
    }

    /// FLOPs one training step executes per token (the MFU numerator; `ModelFlops` says what
    /// counts), less the weight-gradient products that frozen matrices skip.
    public var flopsPerToken: Double {
        let model = config.model
        var skipped = 0.0
        for name in parallelModel.frozenTensors {
            // The embedding table is a product only as a tied lm_head; norms are no products.
            guard let entry = tensorLayout.globalLayout.entry(named: name), entry.shape.count == 2,
                  name != "model.embed_tokens.weight" || model.hasTiedHead else { continue }
            skipped += 2 * Double(entry.count)
        }
        return ModelFlops(model, sequenceLength: config.train.seqLen).trainingPerToken - skipped
    }
}
