import Tensors

/// A contiguous group of parameters that the model uses together: the unit that ZeRO-3 gathers
/// before use, that a gradient bucket covers, and that a pipeline stage owns.
public enum ModelBlock: Hashable, Sendable, CustomStringConvertible {
    /// `model.embed_tokens.weight`.
    case embedding
    /// Decoder layer `i`: its two norms, attention projections and MLP.
    case layer(Int)
    /// `model.norm.weight` and (when untied) `lm_head.weight`, or `score.weight` (a scalar head).
    case head
    /// Decoder layer `i`'s LoRA adapters (`LoRAConfig`), after the layer's block.
    case adapter(Int)

    /// Whether this is a layer's adapter block.
    public var isAdapter: Bool {
        if case .adapter = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .embedding: "embedding"
        case .layer(let index): "layer \(index)"
        case .head: "head"
        case .adapter(let index): "adapters of layer \(index)"
        }
    }
}

/// The part of the model one pipeline stage holds: a range of decoder layers, and the embedding
/// (first stage) and the head (last stage). Names stay global (`model.layers.17…`).
public struct ModelPart: Sendable, Equatable, CustomStringConvertible {
    public var layers: Range<Int>
    public var hasEmbedding: Bool
    public var hasHead: Bool

    public init(layers: Range<Int>, hasEmbedding: Bool, hasHead: Bool) {
        self.layers = layers
        self.hasEmbedding = hasEmbedding
        self.hasHead = hasHead
    }

    /// The whole model.
    public static func whole(_ config: LlamaConfig) -> ModelPart {
        ModelPart(layers: 0..<config.numHiddenLayers, hasEmbedding: true, hasHead: true)
    }

    /// Whether this part's head projects with the embedding table (a tied model's head).
    public func hasTiedHead(_ config: LlamaConfig) -> Bool {
        hasHead && config.hasTiedHead
    }

    public var description: String {
        var parts: [String] = []
        if hasEmbedding { parts.append("embedding") }
        parts.append(layers.isEmpty ? "no layers" : layers.count == 1 ? "layer \(layers.lowerBound)" : "layers \(layers.lowerBound)–\(layers.upperBound - 1)")
        if hasHead { parts.append("head") }
        return parts.joined(separator: " + ")
    }
}

/// Where every parameter lives in the flat parameter arena, with Hugging Face names.
///
/// Blocks are laid out in model order — embedding, layer 0 … layer L−1, head — and each block's
/// tensors are contiguous, so a block is one range of the arena. Gradients and optimizer state
/// use the same layout.
public struct ParameterLayout: Sendable {
    public struct Entry: Sendable, Equatable {
        /// The Hugging Face name, e.g. `model.layers.3.self_attn.q_proj.weight`.
        public let name: String
        /// Row-major shape, HF convention (`[out_features, in_features]` for projections).
        public let shape: [Int]
        /// Offset in elements from the start of the arena.
        public let offset: Int
        public let block: ModelBlock
        /// What the tensor is to the model.
        public let role: TensorRole
        /// Whether AdamW applies weight decay to it (matrices yes; norm weights and biases no).
        public var decays: Bool { role.decays }
        /// False for a frozen tensor: backward computes no gradient for it (its weight-gradient
        /// GEMM is skipped; input gradients still flow) and the optimizer leaves it as it is.
        public internal(set) var trainable = true
        public var count: Int { shape.reduce(1, *) }
        /// Elements per row (first dimension): 1 for a vector.
        public var rowWidth: Int { shape.dropFirst().reduce(1, *) }
    }

    public private(set) var entries: [Entry]
    /// Blocks in model order.
    public let blocks: [ModelBlock]
    /// Element count of the whole arena.
    public let count: Int
    private let blockRanges: [ModelBlock: Range<Int>]
    private let indexByName: [String: Int]

    /// The layout of `part` of the model (the whole model by default).
    ///
    /// A part with the head of a tied model (`tie_word_embeddings`) holds the embedding table
    /// too, as its output projection: on a pipeline's last stage that is a copy of the first
    /// stage's table, kept equal by summing the two gradients (Megatron's embedding group).
    /// With `lora`, each layer's block is followed by its adapters' block.
    public init(config: LlamaConfig, part: ModelPart? = nil, lora: LoRAConfig? = nil) {
        let part = part ?? .whole(config)
        self.init(config: config, layers: Array(part.layers), hasEmbedding: part.hasEmbedding || part.hasTiedHead(config),
                  hasHead: part.hasHead, lora: lora)
    }

    /// The layout of the parts one rank holds (an interleaved pipeline stage's chunks), blocks in
    /// model order.
    public init(config: LlamaConfig, parts: [ModelPart], lora: LoRAConfig? = nil) {
        self.init(config: config, layers: parts.flatMap { Array($0.layers) }.sorted(),
                  hasEmbedding: parts.contains { $0.hasEmbedding || $0.hasTiedHead(config) }, hasHead: parts.contains { $0.hasHead },
                  lora: lora)
    }

    private init(config: LlamaConfig, layers: [Int], hasEmbedding: Bool, hasHead: Bool, lora: LoRAConfig?) {
        let hidden = config.hiddenSize
        var entries: [Entry] = []
        var ranges: [ModelBlock: Range<Int>] = [:]
        var blocks: [ModelBlock] = []
        var offset = 0
        func add(_ block: ModelBlock, _ tensors: [(String, [Int], TensorRole)]) {
            let start = offset
            for (name, shape, role) in tensors {
                entries.append(Entry(name: name, shape: shape, offset: offset, block: block, role: role))
                offset += shape.reduce(1, *)
            }
            ranges[block] = start..<offset
            blocks.append(block)
        }
        if hasEmbedding { add(.embedding, [("model.embed_tokens.weight", [config.vocabSize, hidden], .embedding)]) }
        let adapters = lora?.tensors(config) ?? []
        for index in layers {
            let layer = DecoderLayer(config: config, layer: index)
            add(.layer(index), layer.tensors.map { ("model.layers.\(index).\($0.suffix)", $0.shape, $0.role) })
            if !adapters.isEmpty {
                add(.adapter(index), adapters.map { ("model.layers.\(index).\($0.suffix)", $0.shape, $0.role) })
            }
        }
        if hasHead {
            var head: [(String, [Int], TensorRole)] = [("model.norm.weight", [hidden], .finalNorm)]
            if config.hasScoreHead {
                head.append(("score.weight", [config.numLabels, hidden], .score))
            } else if !config.tieWordEmbeddings {
                head.append(("lm_head.weight", [config.vocabSize, hidden], .languageModelHead))
            }
            add(.head, head)
        }
        self.entries = entries
        self.blocks = blocks
        self.count = offset
        self.blockRanges = ranges
        self.indexByName = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.name, $0) })
    }

    /// Whether the layout holds `block`.
    public func contains(_ block: ModelBlock) -> Bool {
        blockRanges[block] != nil
    }

    /// The arena range of a block.
    public func range(of block: ModelBlock) -> Range<Int> {
        guard let range = blockRanges[block] else { preconditionFailure("no block \(block) in this layout") }
        return range
    }

    public func entry(named name: String) -> Entry? {
        indexByName[name].map { entries[$0] }
    }

    /// The index into `entries` of the tensor `name`.
    public func index(named name: String) -> Int? {
        indexByName[name]
    }

    /// The entries of one block, in arena order.
    public func entries(in block: ModelBlock) -> [Entry] {
        entries.filter { $0.block == block }
    }

    /// This layout with the tensors named in `frozen` frozen (names it does not hold are
    /// ignored: a pipeline stage or tensor-parallel rank holds only some).
    public func freezing(_ frozen: Set<String>) -> ParameterLayout {
        var copy = self
        for index in copy.entries.indices { copy.entries[index].trainable = !frozen.contains(copy.entries[index].name) }
        return copy
    }

    /// Whether some tensor of `block` trains (a block with none gets no gradients at all).
    public func trains(_ block: ModelBlock) -> Bool {
        entries.contains { $0.block == block && $0.trainable }
    }

    /// Whether the tensor `name` trains (true for names the layout does not hold).
    public func trains(_ name: String) -> Bool {
        entry(named: name)?.trainable ?? true
    }
}

/// How the model reaches its parameters and gradients, one block at a time: the seam between
/// the single-device model and the parallel layers (STYLE §Our habits 1).
///
/// The model brackets every use of a block's parameters with `acquireParameters` /
/// `releaseParameters` (forward and backward each acquire and release; a recomputed layer is
/// recomputed and differentiated inside backward's one bracket), and
/// writes a block's gradients between `acquireGradients` and `releaseGradients`, called exactly
/// once per block per backward, after the last write (for a tied head, the embedding's gradients
/// are acquired during the head's backward and released after the embedding's backward).
/// Pointers are to the block's first element, laid out as `ParameterLayout` says, relative to
/// `layout.range(of: block).lowerBound`.
///
/// - The local implementation (`ArenaParameters`) returns views into full arenas; releases do
///   nothing.
/// - Data parallel starts a non-blocking all-reduce of the block's gradients on release.
/// - ZeRO-2 reduce-scatters the block's gradients on release and frees the full-size buffer.
/// - ZeRO-3 all-gathers the block's parameters on acquire and frees them on release.
public protocol ParameterAccess: AnyObject {
    var layout: ParameterLayout { get }
    func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float>
    func releaseParameters(_ block: ModelBlock)
    func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float>
    func releaseGradients(_ block: ModelBlock)
}

/// Full parameter and gradient arenas on this rank: one rank, or plain data parallel before the
/// gradients are reduced.
public final class ArenaParameters: ParameterAccess {
    public let layout: ParameterLayout
    /// All parameters, `layout.count` floats.
    public let parameters: Tensor
    /// All gradients, same layout; backward accumulates into it, the trainer zeroes it.
    public let gradients: Tensor

    public init(layout: ParameterLayout) {
        self.layout = layout
        self.parameters = Tensor(shape: [layout.count])
        self.gradients = Tensor(shape: [layout.count])
    }

    public func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        parameters.pointer + layout.range(of: block).lowerBound
    }

    public func releaseParameters(_ block: ModelBlock) {}

    public func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        gradients.pointer + layout.range(of: block).lowerBound
    }

    public func releaseGradients(_ block: ModelBlock) {}
}
