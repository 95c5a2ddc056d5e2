import Model
import Parallel
import Runtime
import Tensors

/// The Llama model laid over one rank of the mesh: the one `parallelize` step that every
/// trainer and forward-only model goes through, in a fixed order (torchtitan's):
///
/// 1. pipeline parallelism picks this stage's layers (`ModelSplit`: contiguous layer ranges,
///    or interleaved chunks);
/// 2. tensor parallelism gives the model local sizes (`TensorParallelLayout`: Megatron's column
///    and row splits, a vocabulary-parallel embedding and head) and its activation hooks
///    (`TensorParallelExchange`, with sequence parallelism when asked);
/// 3. data parallelism and ZeRO hold that local parameter arena on the `data_context` group
///    (`DataParallelParameters`), with `TensorParallelParameters` between them for replicated
///    KV heads and sequence-parallel norms;
/// 4. a tied model's first and last pipeline stages share an embedding group that keeps the two
///    copies of the table equal.
///
/// Parameters start from a layout-independent initialization (every rank builds its slices of
/// the same global model), so every mesh holds the same model.
public final class ParallelModel {
    /// The tensor-parallel split of the parts this rank holds.
    public let tensorLayout: TensorParallelLayout
    /// This rank's (local) parameter layout, with its frozen tensors.
    public let layout: ParameterLayout
    /// The names of the tensors that do not train.
    public let frozenTensors: Set<String>
    /// The model (with pipeline parallelism: the first chunk's first activation slot).
    public let model: LlamaModel
    /// This rank's pipeline stage; nil without pipeline parallelism.
    let pipeline: PipelineRunner?
    /// The stages of this rank's model replica.
    let pipelineCommunicator: Communicator
    public let parameters: DataParallelParameters
    /// What the model reaches its parameters through: `parameters`, or the tensor-parallel
    /// wrapper around it.
    let access: any ParameterAccess
    /// A tied model under pipeline parallelism: the first and the last stage of this pipeline,
    /// which both hold the embedding table (input lookup and output projection) and sum its
    /// gradients every step so the two copies stay equal; nil on other stages and layouts.
    let embeddingCommunicator: Communicator?
    /// Whether this rank's embedding table is the last stage's copy: trained, but neither
    /// counted in the gradient norm nor saved (the first stage's is).
    let holdsEmbeddingCopy: Bool
    /// QLoRA (`lora.quantize_base`): the NF4 layer projections every model instance reads,
    /// once `quantizeBase()` has run after the base was loaded; nil before, and without it.
    public internal(set) var quantizedBase: QuantizedBase?
    /// Bytes of f32 base weights `quantizeBase()` released from the parameter arena.
    public internal(set) var releasedBaseBytes = 0
    let lora: LoRAConfig?

    /// The micro-batch shape every model instance runs.
    public struct Shape: Sendable {
        public var microBatchSize: Int
        public var sequenceLength: Int
        /// Micro-batches of a step on this rank (the pipeline schedule's length).
        public var microBatchCount: Int
        public var recompute = false
        public var documentMasking = false

        public init(microBatchSize: Int, sequenceLength: Int, microBatchCount: Int, recompute: Bool = false,
                    documentMasking: Bool = false) {
            self.microBatchSize = microBatchSize
            self.sequenceLength = sequenceLength
            self.microBatchCount = microBatchCount
            self.recompute = recompute
            self.documentMasking = documentMasking
        }
    }

    /// - Parameters:
    ///   - trainable: false for a forward-only model — activations sized for inference, no
    ///     gradient or optimizer memory.
    ///   - frozen: names of tensors that do not train (`PretrainConfig.frozenTensors`).
    ///   - lora: LoRA adapters on the projections; every tensor of the base is then frozen too,
    ///     but those of its `modules_to_save`.
    ///   - seed: the initialization's seed.
    public init(config: LlamaConfig, shape: Shape, parallel: ParallelSection, mesh: DeviceMesh, threads: KernelThreads,
                trainable: Bool = true, frozen: Set<String> = [], lora: LoRAConfig? = nil, seed: UInt64) throws {
        let parts = ModelSplit.parts(config, sequenceLength: shape.sequenceLength, stage: mesh.pipeline.rank,
                                     stageCount: mesh.pipeline.size, chunkCount: parallel.virtualStages)
        let tensorLayout = TensorParallelLayout(config: config, degree: mesh.tensor.size, rank: mesh.tensor.rank, parts: parts,
                                                lora: lora)
        // LoRA trains the adapters only: the base blocks are frozen whole (no gradients, moments
        // or reductions).
        let frozen = lora.map { lora in
            frozen.union(tensorLayout.globalLayout.entries.filter { !$0.block.isAdapter && !lora.savedTensorNames.contains($0.name) }.map(\.name))
        } ?? frozen
        let stage = ZeroStage(rawValue: parallel.zeroStage) ?? .none
        if let format = lora?.quantizeBase?.rawValue, stage == .parameters {
            throw JobError("lora.quantize_base \(format) with parallel.zero_stage 3: ZeRO-3 gathers each layer's f32 weights for every use, which QLoRA releases; use zero_stage 0, 1 or 2 (the frozen base has no optimizer state or gradients to shard anyway)")
        }
        self.lora = lora
        pipelineCommunicator = mesh.pipeline
        self.tensorLayout = tensorLayout
        let regions: any TensorParallelRegions = tensorLayout.degree > 1
            ? TensorParallelExchange(communicator: mesh.tensor, layout: tensorLayout, sequenceParallel: parallel.sequenceParallel)
            : SingleDeviceRegions()
        func makeModel(_ part: ModelPart) -> LlamaModel {
            LlamaModel(config: tensorLayout.localConfig, microBatchSize: shape.microBatchSize, sequenceLength: shape.sequenceLength,
                       recompute: shape.recompute && trainable, documentMasking: shape.documentMasking, forwardOnly: !trainable,
                       frozen: frozen, lora: lora, threads: threads, regions: regions, part: part)
        }
        if mesh.pipeline.size > 1 {
            let runner = PipelineRunner(pipeline: mesh.pipeline, parts: parts, microBatchCount: shape.microBatchCount,
                                        forwardOnly: !trainable, makeModel: makeModel)
            pipeline = runner
            model = runner.models[0][0]
        } else {
            pipeline = nil
            model = makeModel(parts[0])
        }
        let layout = tensorLayout.localLayout.freezing(frozen)
        self.layout = layout
        frozenTensors = frozen
        let tiedStages = mesh.pipeline.size > 1 && config.hasTiedHead
        let endStage = mesh.pipeline.rank == 0 || mesh.pipeline.rank == mesh.pipeline.size - 1
        embeddingCommunicator = tiedStages ? try mesh.pipeline.split(color: endStage ? 0 : nil, key: mesh.pipeline.rank) : nil
        holdsEmbeddingCopy = tiedStages && mesh.pipeline.rank != 0 && layout.contains(.embedding)
        parameters = DataParallelParameters(layout: layout, stage: stage, communicator: mesh.dataContext, threads: threads,
                                            trainable: trainable)
        access = TensorParallelParameters.isNeeded(tensorLayout, sequenceParallel: parallel.sequenceParallel)
            ? try TensorParallelParameters(inner: parameters, tensorLayout: tensorLayout, tensorCommunicator: mesh.tensor,
                                           sequenceParallel: parallel.sequenceParallel)
            : parameters
        let initial = Tensor(shape: [layout.count])
        tensorLayout.initialize(initial.pointer, seed: seed)
        parameters.load(initial.pointer)
    }

    /// Every model instance this rank runs (pipeline stages hold several).
    var models: [LlamaModel] { pipeline?.models.flatMap { $0 } ?? [model] }

    /// Forward of each micro-batch through this rank's part (and the pipeline), calling `head`
    /// after each forward on the rank that holds the head.
    func forward(_ batches: [MicroBatch], head: PipelineRunner.HeadAction) throws {
        if let pipeline {
            try pipeline.evaluate(batches: batches, access: access, head: head)
            return
        }
        model.adapterDropout = nil  // evaluation: no LoRA dropout
        for batch in batches {
            let crossEntropy = batch.withPointers { tokens, targets, positions in
                model.forward(tokens: tokens, targets: targets, positions: positions, parameters: access)
            }
            head(model, batch, crossEntropy)
        }
    }

    /// Σ log p(target) and counted targets of every sequence of every micro-batch, in one call:
    /// `result[b][s]` is sequence s of `batches[b].sequenceSpans`. Completions are scored by
    /// giving their tokens targets and the prompt's −100. Every rank of a pipeline gets the
    /// figures (the last stage computes them); data-parallel ranks score their own batches.
    public func sequenceLogProbabilities(_ batches: [MicroBatch]) throws -> [[SequenceLogProbability]] {
        let spans = batches.map(\.sequenceSpans)
        var sums: [Double] = [], counts: [Int64] = []
        var index = 0
        try forward(batches) { model, _, _ in
            for sequence in model.sequenceLogProbabilities(over: spans[index]) {
                sums.append(sequence.sum)
                counts.append(Int64(sequence.count))
            }
            index += 1
        }
        if pipeline != nil {
            // Only the last stage computed them: a sum over the pipeline hands them to every stage.
            let total = spans.reduce(0) { $0 + $1.count }
            if sums.isEmpty {
                sums = [Double](repeating: 0, count: total)
                counts = [Int64](repeating: 0, count: total)
            }
            try pipelineCommunicator.allreduce(&sums, .sum)
            try pipelineCommunicator.allreduce(&counts, .sum)
        }
        var next = 0
        return spans.map { batchSpans in
            defer { next += batchSpans.count }
            return (next..<next + batchSpans.count).map { SequenceLogProbability(sum: sums[$0], count: Int(counts[$0])) }
        }
    }
}
