import Checkpoint
import DataPipeline
import Model
import Runtime

/// The run config of `meshlm pretrain` (DESIGN §4): one section per component, each decoded
/// strictly and validated once. Keys and defaults are documented in docs/training.md.
public struct PretrainConfig: Codable, Sendable, ValidatedConfig {
    public var model: LlamaConfig
    public var run: RunSection
    public var train: TrainSection
    public var optimizer: OptimizerSection
    public var data: DataSection
    public var parallel: ParallelSection
    public var checkpoint: CheckpointSection
    /// LoRA adapters on the layers' projections (PEFT's names); the base is then frozen.
    public var lora: LoRAConfig?
    /// Supervised fine-tuning's data settings (`meshlm sft` only).
    public var sft: SFTSection?
    /// Preference data's settings (`meshlm dpo` and `meshlm reward`).
    public var preference: PreferenceSection?
    /// The preference loss (`meshlm dpo`).
    public var dpo: DPOSection?
    /// The reward model's loss (`meshlm reward`).
    public var reward: RewardSection?
    /// KTO's loss (`meshlm kto`).
    public var kto: KTOSection?

    enum CodingKeys: String, CodingKey { case model, run, train, optimizer, data, parallel, checkpoint, lora, sft, preference, dpo, reward, kto }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(LlamaConfig.self, forKey: .model)
        run = try c.decode(.run, default: RunSection())
        train = try c.decode(TrainSection.self, forKey: .train)
        optimizer = try c.decode(OptimizerSection.self, forKey: .optimizer)
        data = try c.decode(DataSection.self, forKey: .data)
        parallel = try c.decode(.parallel, default: ParallelSection())
        checkpoint = try c.decode(.checkpoint, default: CheckpointSection())
        lora = try c.decodeIfPresent(LoRAConfig.self, forKey: .lora)
        sft = try c.decodeIfPresent(SFTSection.self, forKey: .sft)
        preference = try c.decodeIfPresent(PreferenceSection.self, forKey: .preference)
        dpo = try c.decodeIfPresent(DPOSection.self, forKey: .dpo)
        reward = try c.decodeIfPresent(RewardSection.self, forKey: .reward)
        kto = try c.decodeIfPresent(KTOSection.self, forKey: .kto)
    }

    /// What a mixture-of-experts model cannot be combined with yet (docs/moe.md, "Status").
    private func validateExperts() throws(ConfigError) {
        guard parallel.tp == 1 else {
            throw .invalid("parallel.tp", parallel.tp, "must be 1 for a mixture-of-experts model so far (expert tensor parallelism is not implemented yet; use data, ZeRO or pipeline parallelism)")
        }
        if let lora, let target = lora.targets.first(where: { [.gate, .up, .down].contains($0) }) {
            throw .invalid("lora.target_modules", target.moduleName, "adapts the MLP, which this mixture-of-experts model's sparse layers do not have (adapters on experts are not implemented yet; target the attention projections)")
        }
        guard model.routerAuxLossType == .switch || parallel.pp == 1 else {
            throw .invalid("model.router_aux_loss_type", model.routerAuxLossType.rawValue, "pools every layer's routing (transformers' form), which pipeline stages do not share; use switch (per layer) with parallel.pp > 1")
        }
    }

    public func validate() throws(ConfigError) {
        do { try model.validate() } catch { throw ConfigError(key: "model." + error.key, message: error.message) }
        try train.validate()
        try optimizer.validate()
        try parallel.validate()
        try checkpoint.validate()
        if let lora {
            do { try lora.validate() } catch { throw ConfigError(key: "lora." + error.key, message: error.message) }
        }
        if model.hasExperts { try validateExperts() }
        _ = try frozenTensors()
        _ = try dpo?.loss()
        guard train.seqLen <= model.maxPositionEmbeddings else {
            throw .invalid("train.seq_len", train.seqLen, "must not exceed model.max_position_embeddings \(model.maxPositionEmbeddings)")
        }
        if parallel.sequenceParallel {
            // Sequence parallelism splits the micro-batch's B·T token rows evenly over the tensor group.
            let rows = train.microBatchSize * train.seqLen
            guard rows % parallel.tp == 0 else {
                throw .invalid("parallel.sequence_parallel", true, "splits train.micro_batch_size × train.seq_len = \(rows) token rows over tp \(parallel.tp), which must divide them")
            }
        }
    }
}

extension PretrainConfig {
    /// The names of the model's tensors that `train.freeze` freezes (empty without it).
    public func frozenTensors() throws(ConfigError) -> Set<String> {
        guard !train.freeze.isEmpty else { return [] }
        let names = ParameterLayout(config: model).entries.map(\.name)
        var frozen = Set<String>()
        for pattern in train.freeze {
            let matched = names.filter { TensorNamePattern(pattern).matches($0) }
            guard !matched.isEmpty else {
                throw .invalid("train.freeze", pattern, "matches no tensor of the model (names as in Hugging Face checkpoints, e.g. model.layers.*.mlp.*)")
            }
            frozen.formUnion(matched)
        }
        guard frozen.count < names.count else {
            throw .invalid("train.freeze", train.freeze.joined(separator: ", "), "freezes every tensor; leave some to train")
        }
        return frozen
    }
}

/// A tensor-name pattern: `*` matches any run of characters (dots included), everything else
/// itself.
public struct TensorNamePattern: Sendable {
    let pieces: [Substring]

    public init(_ pattern: String) {
        pieces = pattern.split(separator: "*", omittingEmptySubsequences: false)
    }

    public func matches(_ name: String) -> Bool {
        guard pieces.count > 1 else { return name == pieces[0] }
        var rest = Substring(name)
        guard rest.hasPrefix(pieces[0]) else { return false }
        rest = rest.dropFirst(pieces[0].count)
        for piece in pieces.dropFirst().dropLast() where !piece.isEmpty {
            guard let found = rest.range(of: piece) else { return false }
            rest = rest[found.upperBound...]
        }
        return rest.hasSuffix(pieces[pieces.count - 1])
    }
}

public struct RunSection: Codable, Sendable {
    /// Where metrics (and later checkpoints) go.
    public var dir: String
    enum CodingKeys: String, CodingKey { case dir }
    public init(dir: String = "runs/pretrain") { self.dir = dir }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dir = try c.decode(.dir, default: "runs/pretrain")
    }
}

public struct TrainSection: Codable, Sendable {
    public var steps: Int
    public var seed: Int
    public var seqLen: Int
    public var globalBatchSize: Int
    public var microBatchSize: Int
    public var logInterval: Int
    public var evalInterval: Int
    public var evalBatches: Int
    public var stopAtStep: Int
    public var recompute: Bool
    /// Attention stays within each packed document (positions restarting mark the boundaries).
    public var documentMasking: Bool
    /// Patterns of tensor names (Hugging Face names, `*` matching any run of characters, e.g.
    /// `model.layers.*.mlp.*`) that do not train: no weight-gradient kernels, no optimizer
    /// updates. Each must match some tensor, and some tensor must still train.
    public var freeze: [String]

    enum CodingKeys: String, CodingKey {
        case steps, seed, seqLen = "seq_len", globalBatchSize = "global_batch_size", microBatchSize = "micro_batch_size"
        case logInterval = "log_interval", evalInterval = "eval_interval", evalBatches = "eval_batches"
        case stopAtStep = "stop_at_step", recompute, documentMasking = "document_masking", freeze
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        steps = try c.decode(Int.self, forKey: .steps)
        seed = try c.decode(.seed, default: 1234)
        seqLen = try c.decode(Int.self, forKey: .seqLen)
        globalBatchSize = try c.decode(Int.self, forKey: .globalBatchSize)
        microBatchSize = try c.decode(.microBatchSize, default: 1)
        logInterval = try c.decode(.logInterval, default: 10)
        evalInterval = try c.decode(.evalInterval, default: 0)
        evalBatches = try c.decode(.evalBatches, default: 8)
        stopAtStep = try c.decode(.stopAtStep, default: 0)
        recompute = try c.decode(.recompute, default: false)
        documentMasking = try c.decode(.documentMasking, default: false)
        freeze = try c.decode(.freeze, default: [])
    }

    func validate() throws(ConfigError) {
        for (key, value) in [("train.steps", steps), ("train.seq_len", seqLen), ("train.global_batch_size", globalBatchSize),
                             ("train.micro_batch_size", microBatchSize), ("train.log_interval", logInterval),
                             ("train.eval_batches", evalBatches)] where value < 1 {
            throw .invalid(key, value, "must be at least 1")
        }
        guard evalInterval >= 0 else { throw .invalid("train.eval_interval", evalInterval, "must be 0 (never) or positive") }
        guard (0...steps).contains(stopAtStep) else {
            throw .invalid("train.stop_at_step", stopAtStep, "must be 0 (run all train.steps) or between 1 and train.steps \(steps)")
        }
        guard globalBatchSize % microBatchSize == 0 else {
            throw .invalid("train.global_batch_size", globalBatchSize, "must be a multiple of train.micro_batch_size \(microBatchSize)")
        }
    }
}

public struct OptimizerSection: Codable, Sendable {
    public var lr: Double
    public var minLr: Double
    public var warmupSteps: Int
    public var schedule: DecayShape
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double
    public var gradClip: Double

    enum CodingKeys: String, CodingKey {
        case lr, minLr = "min_lr", warmupSteps = "warmup_steps", schedule, beta1, beta2, eps
        case weightDecay = "weight_decay", gradClip = "grad_clip"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lr = try c.decode(Double.self, forKey: .lr)
        minLr = try c.decode(.minLr, default: lr / 10)
        warmupSteps = try c.decode(.warmupSteps, default: 0)
        schedule = try c.decode(.schedule, default: .cosine)
        beta1 = try c.decode(.beta1, default: 0.9)
        beta2 = try c.decode(.beta2, default: 0.95)
        eps = try c.decode(.eps, default: 1e-8)
        weightDecay = try c.decode(.weightDecay, default: 0.1)
        gradClip = try c.decode(.gradClip, default: 1.0)
    }

    func validate() throws(ConfigError) {
        guard lr > 0 else { throw .invalid("optimizer.lr", lr, "must be positive") }
        guard (0...lr).contains(minLr) else { throw .invalid("optimizer.min_lr", minLr, "must be between 0 and optimizer.lr \(lr)") }
        guard warmupSteps >= 0 else { throw .invalid("optimizer.warmup_steps", warmupSteps, "must not be negative") }
        guard (0..<1).contains(beta1) else { throw .invalid("optimizer.beta1", beta1, "must be in [0, 1)") }
        guard (0..<1).contains(beta2) else { throw .invalid("optimizer.beta2", beta2, "must be in [0, 1)") }
        guard eps > 0 else { throw .invalid("optimizer.eps", eps, "must be positive") }
        guard weightDecay >= 0 else { throw .invalid("optimizer.weight_decay", weightDecay, "must not be negative") }
        guard gradClip >= 0 else { throw .invalid("optimizer.grad_clip", gradClip, "must be 0 (off) or positive") }
    }

    public func schedule(totalSteps: Int) -> LearningRateSchedule {
        LearningRateSchedule(peak: lr, floor: minLr, warmupSteps: warmupSteps, totalSteps: totalSteps, shape: schedule)
    }
}

public struct DataSection: Codable, Sendable {
    /// A shard directory (with manifest.json), or a `.bin` / `.npy` token file.
    public var train: String
    /// Held-out tokens for periodic evaluation (optional).
    public var eval: String?
    /// Id width of a headerless `.bin` file.
    public var binDtype: RawTokenType
    /// The EOS id of `.bin` / `.npy` data (shard directories record theirs).
    public var eosId: Int?
    /// Whether the target after an EOS (the next document's first token) is trained on.
    public var boundaryTargets: BoundaryTargets
    /// Whether each epoch visits the samples in a seeded random order.
    public var shuffle: Bool

    enum CodingKeys: String, CodingKey {
        case train, eval, binDtype = "bin_dtype", eosId = "eos_id", boundaryTargets = "boundary_targets", shuffle
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        train = try c.decode(String.self, forKey: .train)
        eval = try c.decodeIfPresent(String.self, forKey: .eval)
        binDtype = try c.decode(.binDtype, default: .uint16)
        eosId = try c.decodeIfPresent(Int.self, forKey: .eosId)
        boundaryTargets = try c.decode(.boundaryTargets, default: .keep)
        shuffle = try c.decode(.shuffle, default: true)
    }
}

public struct ParallelSection: Codable, Sendable {
    /// 0 = what the world size leaves after the other degrees.
    public var dp: Int
    public var tp: Int
    public var pp: Int
    public var cp: Int
    public var ep: Int
    public var zeroStage: Int
    public var sequenceParallel: Bool
    /// Model chunks per pipeline stage: 1 runs the 1F1B schedule, more the interleaved one
    /// (Megatron's virtual pipeline size).
    public var virtualStages: Int

    enum CodingKeys: String, CodingKey {
        case dp, tp, pp, cp, ep, zeroStage = "zero_stage", sequenceParallel = "sequence_parallel", virtualStages = "virtual_stages"
    }

    public init() {
        dp = 0; tp = 1; pp = 1; cp = 1; ep = 1; zeroStage = 0; sequenceParallel = false; virtualStages = 1
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dp = try c.decode(.dp, default: 0)
        tp = try c.decode(.tp, default: 1)
        pp = try c.decode(.pp, default: 1)
        cp = try c.decode(.cp, default: 1)
        ep = try c.decode(.ep, default: 1)
        zeroStage = try c.decode(.zeroStage, default: 0)
        sequenceParallel = try c.decode(.sequenceParallel, default: false)
        virtualStages = try c.decode(.virtualStages, default: 1)
    }

    func validate() throws(ConfigError) {
        guard dp >= 0 else { throw .invalid("parallel.dp", dp, "must be 0 (inferred from the world size) or positive") }
        guard (0...3).contains(zeroStage) else { throw .invalid("parallel.zero_stage", zeroStage, "must be 0, 1, 2 or 3") }
        guard tp >= 1 else { throw .invalid("parallel.tp", tp, "must be at least 1") }
        guard pp >= 1 else { throw .invalid("parallel.pp", pp, "must be at least 1") }
        guard virtualStages >= 1 else { throw .invalid("parallel.virtual_stages", virtualStages, "must be at least 1") }
        guard virtualStages == 1 || pp > 1 else {
            throw .invalid("parallel.virtual_stages", virtualStages, "needs pipeline parallelism (parallel.pp > 1)")
        }
        // Context and expert parallelism are not built yet; refuse rather than ignore them.
        for (key, value) in [("parallel.cp", cp), ("parallel.ep", ep)] where value != 1 {
            throw .invalid(key, value, "only 1 is supported so far (data, ZeRO, tensor, sequence and pipeline parallelism; context and expert parallelism are not implemented yet)")
        }
        guard !sequenceParallel || tp > 1 else {
            throw .invalid("parallel.sequence_parallel", sequenceParallel, "needs tensor parallelism (parallel.tp > 1): it splits what tensor parallelism replicates")
        }
    }
}

public struct CheckpointSection: Codable, Sendable {
    public var interval: Int
    public var keep: Int
    /// Compress and write in the background while training goes on (docs/checkpoints.md).
    public var async: Bool
    /// zstd level of the shard files' frames.
    public var zstdLevel: Int
    /// Whether frames are compressed: `auto` (while compression keeps up with the disk), `zstd`
    /// (always) or `none` (stored raw).
    public var compression: CheckpointCompression
    /// Nice value of the background writer thread with `writer_priority: nice`: above 0 it
    /// yields the cores to training.
    public var writerNice: Int
    /// How the background writer yields to training: `idle` (SCHED_IDLE) or `nice`.
    public var writerPriority: BackgroundPriority
    /// Share of wall time the background writer works (0 < share ≤ 1; 1: no pauses).
    public var writerDutyCycle: Double
    enum CodingKeys: String, CodingKey {
        case interval, keep, async, zstdLevel = "zstd_level", compression, writerNice = "writer_nice", writerPriority = "writer_priority"
        case writerDutyCycle = "writer_duty_cycle"
    }
    public init() { interval = 0; keep = 3; async = true; zstdLevel = -1; compression = .auto; writerNice = 10; writerPriority = .idle; writerDutyCycle = 0.25 }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        interval = try c.decode(.interval, default: 0)
        keep = try c.decode(.keep, default: 3)
        async = try c.decode(.async, default: true)
        zstdLevel = try c.decode(.zstdLevel, default: -1)
        compression = try c.decode(.compression, default: .auto)
        writerNice = try c.decode(.writerNice, default: 10)
        writerPriority = try c.decode(.writerPriority, default: .idle)
        writerDutyCycle = try c.decode(.writerDutyCycle, default: 0.25)
    }

    func validate() throws(ConfigError) {
        guard interval >= 0 else { throw .invalid("checkpoint.interval", interval, "must be 0 (never) or positive") }
        guard keep >= 1 else { throw .invalid("checkpoint.keep", keep, "must be at least 1") }
        guard (-7...19).contains(zstdLevel) else {
            throw .invalid("checkpoint.zstd_level", zstdLevel, "must be between -7 (fastest) and 19 (-1 is the measured default)")
        }
        guard (0...19).contains(writerNice) else { throw .invalid("checkpoint.writer_nice", writerNice, "must be between 0 and 19") }
        guard writerDutyCycle > 0 && writerDutyCycle <= 1 else {
            throw .invalid("checkpoint.writer_duty_cycle", writerDutyCycle, "must be above 0 and at most 1 (1: the writer never pauses)")
        }
    }
}
