import Runtime

/// The seven linear projections of a decoder layer, which LoRA adapters attach to.
public enum Projection: String, Sendable, Hashable, CaseIterable {
    case query, key, value, output, gate, up, down

    /// The Hugging Face / PEFT module name (`q_proj` …), as `target_modules` lists it.
    public var moduleName: String {
        switch self {
        case .query: "q_proj"
        case .key: "k_proj"
        case .value: "v_proj"
        case .output: "o_proj"
        case .gate: "gate_proj"
        case .up: "up_proj"
        case .down: "down_proj"
        }
    }

    /// The path of its weight inside a layer (`self_attn.q_proj`).
    public var path: String {
        switch self {
        case .query, .key, .value, .output: "self_attn." + moduleName
        case .gate, .up, .down: "mlp." + moduleName
        }
    }

    /// The role of the projection's own weight.
    public var role: TensorRole {
        switch self {
        case .query: .query
        case .key: .key
        case .value: .value
        case .output: .output
        case .gate: .gate
        case .up: .up
        case .down: .down
        }
    }

    /// Whether tensor parallelism splits its input (o_proj, down_proj: row-parallel) rather than
    /// its output.
    public var isRowParallel: Bool { self == .output || self == .down }

    /// [out, in] of the projection in a model of `config`'s (local) sizes.
    public func shape(_ config: LlamaConfig) -> (output: Int, input: Int) {
        let (c, i) = (config.hiddenSize, config.intermediateSize)
        let (q, k) = (config.numAttentionHeads * config.headDim, config.numKeyValueHeads * config.headDim)
        switch self {
        case .query: return (q, c)
        case .key, .value: return (k, c)
        case .output: return (c, q)
        case .gate, .up: return (i, c)
        case .down: return (c, i)
        }
    }
}

/// LoRA (Hu et al. 2021) as PEFT computes it: each targeted projection W [out, in] gains
/// `lora_A` [r, in] and `lora_B` [out, r], and computes
///
///     y = x·Wᵀ + scaling · (x̃·Aᵀ)·Bᵀ,   scaling = alpha / r   (rsLoRA: alpha / √r)
///
/// where x̃ = dropout(x) in training (`lora_dropout`; `AdapterDropout`) and x otherwise. With
/// DoRA (`use_dora`; Liu et al. 2024) each targeted projection also gains a magnitude
/// `lora_magnitude_vector` m [out], started at the row norms of W, and computes PEFT's
///
///     y = x·Wᵀ + (k − 1) ⊙ (x̃·Wᵀ) + k ⊙ scaling·(x̃·Aᵀ)·Bᵀ,   k = m / ‖W + scaling·B·A‖_row
///
/// (the norm detached from the gradient): without dropout, y = k ⊙ x·(W + scaling·B·A)ᵀ, the
/// decomposed weight (`WeightDecomposedAdapter`).
///
/// The base stays frozen; only A, B (and m) train. The adapters of layer i live in their own
/// block (`ModelBlock.adapter(i)`), so the layer blocks are frozen whole and hold no gradients,
/// optimizer state or reductions.
///
/// As a config section it takes PEFT's `LoraConfig` names: `r`, `lora_alpha`, `target_modules`
/// (module names, or `all-linear`), `use_rslora`, `use_dora`, `lora_dropout`,
/// `modules_to_save`; and LoRA+'s `loraplus_lr_ratio` (the name LlamaFactory and PEFT's
/// `create_loraplus_optimizer` use).
///
/// QLoRA (Dettmers et al. 2023): `quantize_base: nf4` stores every frozen projection of the
/// layers (q/k/v/o/gate/up/down_proj, targeted or not) as an `NF4Matrix` once the base is
/// loaded, releases its f32 copy, and runs the projections through `NF4Matmul` — bitsandbytes'
/// `load_in_4bit` with `bnb_4bit_quant_type: nf4` and `bnb_4bit_use_double_quant: true`.
/// Norms, biases, embeddings and the head stay f32, as in bitsandbytes, unless
/// `quantize_embeddings` also quantizes a frozen `embed_tokens` and `lm_head` (a small model's
/// weights are mostly those: the 124M config's are 40 %).
public struct LoRAConfig: Codable, Sendable, Equatable, ValidatedConfig {
    public var rank: Int
    public var alpha: Double
    /// The projections that get adapters, in layer order.
    public var targets: [Projection]
    /// rsLoRA's scaling, alpha / √r, instead of alpha / r.
    public var rankStabilized: Bool
    /// Whole modules of the base that train with the adapters (PEFT's `modules_to_save`):
    /// `lm_head`, `embed_tokens`, `score`. A small model's frozen head and embeddings can bound
    /// what adapters alone reach.
    public var modulesToSave: [String] = []
    /// DoRA: a trained magnitude per output row of each targeted projection.
    public var weightDecomposed: Bool
    /// The probability that dropout zeroes an element of an adapter's input in training (0: off).
    public var dropout: Double
    /// LoRA+ (Hayou et al. 2024): the B matrices learn at this multiple of the learning rate
    /// (1: plain LoRA; the paper suggests 16 or so).
    public var loraPlusRatio: Double
    /// QLoRA: the format the frozen layer projections are stored in (nil: f32, plain LoRA).
    public var quantizeBase: BaseQuantization?
    /// QLoRA: the frozen embedding table and lm_head quantized too.
    public var quantizeEmbeddings: Bool

    public init(rank: Int, alpha: Double, targets: [Projection] = Projection.allCases, rankStabilized: Bool = false,
                weightDecomposed: Bool = false, dropout: Double = 0, loraPlusRatio: Double = 1,
                quantizeBase: BaseQuantization? = nil, quantizeEmbeddings: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.targets = Projection.allCases.filter { targets.contains($0) }
        self.rankStabilized = rankStabilized
        self.weightDecomposed = weightDecomposed
        self.dropout = dropout
        self.loraPlusRatio = loraPlusRatio
        self.quantizeBase = quantizeBase
        self.quantizeEmbeddings = quantizeEmbeddings
    }

    enum CodingKeys: String, CodingKey {
        case rank = "r", alpha = "lora_alpha", targets = "target_modules", rankStabilized = "use_rslora"
        case modulesToSave = "modules_to_save", weightDecomposed = "use_dora", dropout = "lora_dropout"
        case loraPlusRatio = "loraplus_lr_ratio", quantizeBase = "quantize_base"
        case quantizeEmbeddings = "quantize_embeddings"
    }

    /// The name PEFT saves DoRA's magnitude under, after the projection's path.
    public static let magnitudeSuffix = ".lora_magnitude_vector"

    /// The modules `modules_to_save` may name, with the tensor each trains.
    public static let savableModules = ["lm_head": "lm_head.weight", "embed_tokens": "model.embed_tokens.weight", "score": "score.weight"]

    /// The tensors of `modules_to_save`, which stay trainable with the adapters.
    public var savedTensorNames: Set<String> { Set(modulesToSave.compactMap { Self.savableModules[$0] }) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rank = try c.decode(.rank, default: 8)
        alpha = try c.decode(.alpha, default: 16)
        rankStabilized = try c.decode(.rankStabilized, default: false)
        modulesToSave = try c.decodeIfPresent([String].self, forKey: .modulesToSave) ?? []
        weightDecomposed = try c.decode(.weightDecomposed, default: false)
        dropout = try c.decode(.dropout, default: 0)
        // PEFT and LlamaFactory write null for "no LoRA+".
        loraPlusRatio = try c.decodeIfPresent(Double.self, forKey: .loraPlusRatio) ?? 1
        if let format = try c.decodeIfPresent(String.self, forKey: .quantizeBase) {
            guard let quantization = BaseQuantization(rawValue: format) else {
                throw DecodingError.dataCorruptedError(forKey: .quantizeBase, in: c, debugDescription: "quantize_base \(format): must be \(BaseQuantization.allCases.map(\.rawValue).joined(separator: " or ")) (or absent for an f32 base)")
            }
            quantizeBase = quantization
        }
        quantizeEmbeddings = try c.decode(.quantizeEmbeddings, default: false)
        let modules = try c.decode(.targets, default: ["all-linear"])
        guard let targets = Self.projections(named: modules) else {
            throw DecodingError.dataCorruptedError(forKey: .targets, in: c, debugDescription: "target_modules \(modules): each must be one of \(Projection.allCases.map(\.moduleName).joined(separator: ", ")), or the list [all-linear]")
        }
        self.targets = targets
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rank, forKey: .rank)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(targets.map(\.moduleName), forKey: .targets)
        try c.encode(rankStabilized, forKey: .rankStabilized)
        try c.encode(modulesToSave, forKey: .modulesToSave)
        try c.encode(weightDecomposed, forKey: .weightDecomposed)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(loraPlusRatio, forKey: .loraPlusRatio)
        try c.encodeIfPresent(quantizeBase?.rawValue, forKey: .quantizeBase)
        try c.encode(quantizeEmbeddings, forKey: .quantizeEmbeddings)
    }

    public func validate() throws(ConfigError) {
        guard rank >= 1 else { throw .invalid("r", rank, "must be at least 1") }
        guard alpha > 0 else { throw .invalid("lora_alpha", alpha, "must be positive") }
        guard !targets.isEmpty else { throw .invalid("target_modules", "[]", "must name at least one projection") }
        guard dropout >= 0 && dropout < 1 else { throw .invalid("lora_dropout", dropout, "must be at least 0 and below 1") }
        guard loraPlusRatio > 0 else { throw .invalid("loraplus_lr_ratio", loraPlusRatio, "must be positive (1 for plain LoRA)") }
        if let quantizeBase, weightDecomposed {
            throw .invalid("quantize_base", quantizeBase.rawValue, "cannot be combined with use_dora: DoRA's row norms need the f32 base (use plain LoRA over a quantized base, or use_dora over an f32 one)")
        }
        if quantizeEmbeddings && quantizeBase == nil {
            throw .invalid("quantize_embeddings", true, "needs quantize_base (the format to quantize them to)")
        }
        for module in modulesToSave where Self.savableModules[module] == nil {
            throw .invalid("modules_to_save", module, "must be one of \(Self.savableModules.keys.sorted().joined(separator: ", "))")
        }
    }

    /// What the adapter's product is multiplied by.
    public var scaling: Float {
        Float(rankStabilized ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }

    /// The projections named by PEFT `target_modules` (`q_proj` …; `all-linear` for every one),
    /// or nil for a name that is not one of them.
    public static func projections(named modules: [String]) -> [Projection]? {
        if modules == ["all-linear"] { return Projection.allCases }
        var projections: [Projection] = []
        for module in modules {
            guard let projection = Projection.allCases.first(where: { $0.moduleName == module }) else { return nil }
            projections.append(projection)
        }
        return projections
    }

    /// The adapter tensors of one layer, in arena order: (A, B) per target, and m with DoRA.
    func tensors(_ config: LlamaConfig) -> [DecoderLayer.Tensor] {
        targets.flatMap { projection in
            let (output, input) = projection.shape(config)
            var tensors = [DecoderLayer.Tensor(role: .loraA(projection), suffix: projection.path + ".lora_A.weight", shape: [rank, input]),
                           DecoderLayer.Tensor(role: .loraB(projection), suffix: projection.path + ".lora_B.weight", shape: [output, rank])]
            if weightDecomposed {
                tensors.append(DecoderLayer.Tensor(role: .loraMagnitude(projection), suffix: projection.path + Self.magnitudeSuffix,
                                                   shape: [output]))
            }
            return tensors
        }
    }
}

/// One projection's adapter tensors (weights, or gradients: nil where frozen); `magnitude` is
/// DoRA's, nil without it.
public struct AdapterTensors {
    public let a, b, magnitude: UnsafeMutablePointer<Float>?
}

/// One layer's adapters: for each targeted projection, its A and B, and DoRA's magnitude
/// (weights, or gradients: nil where frozen).
public struct LayerAdapters {
    public let scaling: Float
    public let rank: Int
    let tensors: [Projection: AdapterTensors]

    init(scaling: Float, rank: Int, tensors: [Projection: AdapterTensors]) {
        self.scaling = scaling
        self.rank = rank
        self.tensors = tensors
    }

    /// The adapter of `projection`, when it has one.
    public func adapter(_ projection: Projection) -> (a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>)? {
        guard let adapter = tensors[projection], let a = adapter.a, let b = adapter.b else { return nil }
        return (a, b)
    }

    /// DoRA's magnitude of `projection`, when it has one.
    public func magnitude(_ projection: Projection) -> UnsafeMutablePointer<Float>? { tensors[projection]?.magnitude }

    /// The gradients of `projection`'s adapter (each nil when frozen).
    func gradients(_ projection: Projection) -> AdapterTensors {
        tensors[projection] ?? AdapterTensors(a: nil, b: nil, magnitude: nil)
    }
}

/// Where each adapter matrix of one layer sits in the layer's adapter block (read once from
/// the layout), and which of them train.
struct AdapterOffsets {
    let scaling: Float
    let rank: Int
    /// (A, B, DoRA's m) offsets from the block's first element, by projection.
    let offsets: [Projection: (a: Int, b: Int, magnitude: Int?)]
    /// The same for gradients: nil where a tensor is frozen.
    let gradientOffsets: [Projection: (a: Int?, b: Int?, magnitude: Int?)]
    /// Whether any adapter of the layer trains.
    let trains: Bool

    init(layout: ParameterLayout, layer: Int, lora: LoRAConfig) {
        let start = layout.range(of: .adapter(layer)).lowerBound
        let entries = layout.entries(in: .adapter(layer))
        var offsets: [Projection: (a: Int, b: Int, magnitude: Int?)] = [:]
        var gradientOffsets: [Projection: (a: Int?, b: Int?, magnitude: Int?)] = [:]
        for projection in lora.targets {
            guard let a = entries.first(where: { $0.role == .loraA(projection) }),
                  let b = entries.first(where: { $0.role == .loraB(projection) }) else {
                preconditionFailure("the layout has no adapter for \(projection) in layer \(layer)")
            }
            let m = entries.first { $0.role == .loraMagnitude(projection) }
            precondition((m != nil) == lora.weightDecomposed, "the layout's DoRA magnitudes do not match use_dora")
            offsets[projection] = (a.offset - start, b.offset - start, m.map { $0.offset - start })
            gradientOffsets[projection] = (a.trainable ? a.offset - start : nil, b.trainable ? b.offset - start : nil,
                                           m.flatMap { $0.trainable ? $0.offset - start : nil })
        }
        (scaling, rank) = (lora.scaling, lora.rank)
        self.offsets = offsets
        self.gradientOffsets = gradientOffsets
        trains = layout.trains(.adapter(layer))
    }

    /// The adapters of an adapter block's parameters.
    func weights(_ block: UnsafeMutablePointer<Float>) -> LayerAdapters {
        LayerAdapters(scaling: scaling, rank: rank, tensors: offsets.mapValues {
            AdapterTensors(a: block + $0.a, b: block + $0.b, magnitude: $0.magnitude.map { block + $0 })
        })
    }

    /// The adapters' gradients in an adapter block's gradients (nil: the block is not acquired).
    func gradients(_ block: UnsafeMutablePointer<Float>?) -> LayerAdapters {
        LayerAdapters(scaling: scaling, rank: rank, tensors: gradientOffsets.mapValues { offsets in
            guard let block else { return AdapterTensors(a: nil, b: nil, magnitude: nil) }
            return AdapterTensors(a: offsets.a.map { block + $0 }, b: offsets.b.map { block + $0 },
                                  magnitude: offsets.magnitude.map { block + $0 })
        })
    }
}

/// Which dropout masks a training forward draws for the LoRA adapters (`lora_dropout`; see
/// `AdapterDropout`): set by the trainer before each training micro-batch's forward, nil for
/// evaluation and scoring (no dropout, as PEFT in eval mode).
public struct AdapterDropoutDraw: Sendable, Equatable {
    /// The run's seed (`train.seed`).
    public var seed: UInt64
    /// The optimizer step.
    public var step: Int
    /// The index of the micro-batch's first row in the step's global batch (`MicroBatch.firstRow`).
    public var firstRow: Int

    public init(seed: UInt64, step: Int, firstRow: Int) {
        self.seed = seed
        self.step = step
        self.firstRow = firstRow
    }
}

/// How QLoRA stores the frozen base projections (`lora.quantize_base`).
public enum BaseQuantization: String, Sendable, Codable, CaseIterable {
    /// 4-bit NormalFloat, blocks of 64, double-quantized scales (`NF4Matrix`).
    case nf4
}
