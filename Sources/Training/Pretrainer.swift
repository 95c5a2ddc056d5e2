import Foundation
import Model
import Parallel
import Runtime
import Tensors

/// One micro-batch of a rank: `microBatchSize × seqLen` token ids, next-token targets (−100 where
/// no loss counts) and positions within each token's document (RoPE restarts per document).
public struct MicroBatch: Sendable {
    public var tokens: [Int32]
    public var targets: [Int32]
    public var positions: [Int32]

    public init(tokens: [Int32], targets: [Int32], positions: [Int32]) {
        self.tokens = tokens
        self.targets = targets
        self.positions = positions
    }

    public var targetCount: Int { targets.reduce(0) { $0 + ($1 == CrossEntropy.defaultIgnoreIndex ? 0 : 1) } }

    /// Runs `body` with pointers to the three arrays (never empty: a micro-batch has ≥ 1 token).
    func withPointers<Result>(_ body: (UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafePointer<Int32>) -> Result) -> Result {
        tokens.withUnsafeBufferPointer { tokens in
            targets.withUnsafeBufferPointer { targets in
                positions.withUnsafeBufferPointer { positions in
                    guard let t = tokens.baseAddress, let g = targets.baseAddress, let p = positions.baseAddress else {
                        preconditionFailure("an empty micro-batch")
                    }
                    return body(t, g, p)
                }
            }
        }
    }
}

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
}

/// The pretraining loop: data-parallel (and ZeRO) and tensor-parallel training of the Llama
/// model, deterministic for a config and seed, equal across layouts (DESIGN §3).
///
/// The parallel layers wrap the single-device model in a fixed order: tensor parallelism gives
/// it local sizes (`TensorParallelLayout`) and its activation hooks (`TensorParallelExchange`);
/// data parallelism and ZeRO hold that local arena (`DataParallelParameters`) on the
/// `data_context` group; `TensorParallelParameters` sits between them for replicated KV heads.
///
/// One step: every micro-batch forward and backward (gradients of Σ loss / global target count
/// accumulate; the parallel layer reduces them across ranks as backward releases each block),
/// then the global gradient norm, clipping, and AdamW on this rank's share.
public final class Pretrainer {
    public let config: PretrainConfig
    /// The data-parallel group (`data_context`): ranks holding the same model shard.
    public let communicator: Communicator
    /// The tensor-parallel group: the ranks of one model replica.
    public let tensorCommunicator: Communicator
    /// Every rank of the job (checkpoints are written by all of them).
    public let worldCommunicator: Communicator
    /// The pipeline group: the stages of one model replica.
    public let pipelineCommunicator: Communicator
    /// This rank's pipeline stage; nil without pipeline parallelism.
    let pipeline: PipelineRunner?
    /// A tied model under pipeline parallelism: the first and the last stage of this pipeline,
    /// which both hold the embedding table (input lookup and output projection) and sum its
    /// gradients every step so the two copies stay equal; nil on other stages and layouts.
    let embeddingCommunicator: Communicator?
    /// Whether this rank's embedding table is the last stage's copy: trained, but neither
    /// counted in the gradient norm nor saved (the first stage's is).
    let holdsEmbeddingCopy: Bool
    public let tensorLayout: TensorParallelLayout
    /// The model (with pipeline parallelism: the first chunk's first activation slot).
    public let model: LlamaModel
    public let parameters: DataParallelParameters
    /// What the model reaches its parameters through: `parameters`, or the tensor-parallel
    /// wrapper around it.
    let access: any ParameterAccess
    /// This rank's (local) parameter layout.
    public let layout: ParameterLayout
    private let schedule: LearningRateSchedule
    let log: Log

    public init(config: PretrainConfig, mesh: DeviceMesh, threads: KernelThreads, log: Log) throws {
        self.config = config
        self.communicator = mesh.dataContext
        self.tensorCommunicator = mesh.tensor
        self.worldCommunicator = mesh.world
        self.pipelineCommunicator = mesh.pipeline
        self.log = log
        let parts = ModelSplit.parts(config.model, sequenceLength: config.train.seqLen, stage: mesh.pipeline.rank,
                                     stageCount: mesh.pipeline.size, chunkCount: config.parallel.virtualStages)
        let tensorLayout = TensorParallelLayout(config: config.model, degree: mesh.tensor.size, rank: mesh.tensor.rank, parts: parts)
        self.tensorLayout = tensorLayout
        layout = tensorLayout.localLayout
        let regions: any TensorParallelRegions = tensorLayout.degree > 1
            ? TensorParallelExchange(communicator: mesh.tensor, layout: tensorLayout, sequenceParallel: config.parallel.sequenceParallel)
            : SingleDeviceRegions()
        func makeModel(_ part: ModelPart) -> LlamaModel {
            LlamaModel(config: tensorLayout.localConfig, microBatchSize: config.train.microBatchSize,
                       sequenceLength: config.train.seqLen, recompute: config.train.recompute,
                       documentMasking: config.train.documentMasking, threads: threads, regions: regions, part: part)
        }
        if mesh.pipeline.size > 1 {
            let microBatchCount = config.train.globalBatchSize / (config.train.microBatchSize * mesh.dataContext.size)
            let runner = PipelineRunner(pipeline: mesh.pipeline, parts: parts, microBatchCount: microBatchCount, makeModel: makeModel)
            pipeline = runner
            model = runner.models[0][0]
        } else {
            pipeline = nil
            model = makeModel(parts[0])
        }
        let tiedStages = mesh.pipeline.size > 1 && config.model.tieWordEmbeddings
        let endStage = mesh.pipeline.rank == 0 || mesh.pipeline.rank == mesh.pipeline.size - 1
        embeddingCommunicator = tiedStages ? try mesh.pipeline.split(color: endStage ? 0 : nil, key: mesh.pipeline.rank) : nil
        holdsEmbeddingCopy = tiedStages && mesh.pipeline.rank != 0 && layout.contains(.embedding)
        let stage = ZeroStage(rawValue: config.parallel.zeroStage) ?? .none
        parameters = DataParallelParameters(layout: layout, stage: stage, communicator: mesh.dataContext, threads: threads)
        access = TensorParallelParameters.isNeeded(tensorLayout, sequenceParallel: config.parallel.sequenceParallel)
            ? try TensorParallelParameters(inner: parameters, tensorLayout: tensorLayout, tensorCommunicator: mesh.tensor,
                                           sequenceParallel: config.parallel.sequenceParallel)
            : parameters
        schedule = config.optimizer.schedule(totalSteps: config.train.steps)
        // Layout-independent initialization: every rank builds its slices of the same global
        // model and keeps its part.
        let initial = Tensor(shape: [layout.count])
        tensorLayout.initialize(initial.pointer, seed: UInt64(config.train.seed))
        parameters.load(initial.pointer)
    }

    /// Runs one optimizer step on `batches` (this rank's micro-batches) and returns its figures.
    public func step(_ step: Int, batches: [MicroBatch]) throws -> StepResult {
        let start = monotonicSeconds()
        // The loss is a mean over the global batch: every rank scales by the same global count.
        let localTargets = batches.reduce(0) { $0 + $1.targetCount }
        let globalTargets = try communicator.allreduce(Int64(localTargets), .sum)
        guard globalTargets > 0 else { throw CollectiveFailure.agreed("step \(step): the batch has no target tokens to learn from") }
        let lossScale = Float(1 / Double(globalTargets))
        var lossSum = 0.0
        if let pipeline {
            lossSum = try pipeline.run(batches: batches, lossScale: lossScale, parameters: parameters, access: access)
        } else {
            for (index, batch) in batches.enumerated() {
                parameters.isLastMicroBatch = index == batches.count - 1
                let total = batch.withPointers { tokens, targets, positions in
                    model.forward(tokens: tokens, targets: targets, positions: positions, parameters: access)
                }
                lossSum += total.lossSum
                model.backward(lossScale: lossScale, parameters: access)
            }
        }
        let waitStart = monotonicSeconds()
        try parameters.finishBackward()
        if let embeddingCommunicator {
            try embeddingCommunicator.allreduce(parameters.reducedGradients(of: .embedding), .sum)
        }
        let reductionWait = monotonicSeconds() - waitStart
        // The last pipeline stage computed the loss; the others add 0.
        if pipeline != nil { lossSum = try pipelineCommunicator.allreduce(lossSum, .sum) }
        let loss = try communicator.allreduce(lossSum, .sum) / Double(globalTargets)
        guard loss.isFinite else {
            throw CollectiveFailure.agreed("step \(step): the loss is \(loss); stopping (lower optimizer.lr, raise optimizer.warmup_steps, or check the data)")
        }
        let optimizerStart = monotonicSeconds()
        let norm = try gradientNorm()
        guard norm.isFinite else {
            throw CollectiveFailure.agreed("step \(step): the gradient norm is \(norm); stopping (lower optimizer.lr or enable optimizer.grad_clip)")
        }
        let clip = config.optimizer.gradClip
        let scale = clip > 0 && norm > clip ? Float(clip / (norm + 1e-6)) : 1
        let rate = schedule.rate(at: step)
        let settings = AdamW.Settings(learningRate: Float(rate), beta1: Float(config.optimizer.beta1), beta2: Float(config.optimizer.beta2),
                                      epsilon: Float(config.optimizer.eps), weightDecay: Float(config.optimizer.weightDecay))
        try parameters.step(settings: settings, stepNumber: step + 1, gradientScale: scale)
        let tokens = batches.reduce(0) { $0 + $1.tokens.count } * communicator.size
        let end = monotonicSeconds()
        return StepResult(step: step, loss: loss, gradientNorm: norm, learningRate: rate, tokens: tokens,
                          seconds: end - start, reductionWaitSeconds: reductionWait, pipelineWaitSeconds: pipeline?.waitSeconds ?? 0,
                          optimizerSeconds: end - optimizerStart)
    }

    /// Mean loss over `batches` (this rank's share of the eval set), forward only.
    public func evaluate(_ batches: [MicroBatch]) throws -> Double {
        var lossSum = 0.0
        var count = 0
        if let pipeline {
            (lossSum, count) = try pipeline.evaluate(batches: batches, access: access)
        } else {
            for batch in batches {
                let total = batch.withPointers { tokens, targets, positions in
                    model.forward(tokens: tokens, targets: targets, positions: positions, parameters: access)
                }
                lossSum += total.lossSum
                count += total.targetCount
            }
        }
        var sums = [lossSum, Double(count)]
        if pipeline != nil { try pipelineCommunicator.allreduce(&sums, .sum) }
        try communicator.allreduce(&sums, .sum)
        return sums[0] / max(sums[1], 1)
    }

    /// Times every kernel call of every model instance (pipeline stages hold several) into `profile`.
    public func attach(_ profile: StepProfile?) {
        for model in pipeline?.models.flatMap({ $0 }) ?? [model] { model.profile = profile }
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

    /// FLOPs one training step executes per token (the MFU numerator; `ModelFlops` says what counts).
    public var flopsPerToken: Double { ModelFlops(config.model, sequenceLength: config.train.seqLen).trainingPerToken }
}
