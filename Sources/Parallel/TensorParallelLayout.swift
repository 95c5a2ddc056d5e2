import Model

/// How tensor parallelism splits the model over the `tp` ranks of a tensor group (Megatron's
/// layout): each rank runs the single-device model on `localConfig` — its share of heads, of
/// the MLP width and of the vocabulary — and holds, under the global Hugging Face names, these
/// slices of the global tensors:
///
///     embed_tokens, lm_head    rows    vocabulary slice (uneven when tp does not divide vocab_size)
///     q_proj                   rows    this rank's query heads
///     k_proj, v_proj           rows    its key/value heads; when tp > num_key_value_heads each KV
///                                      head is replicated on tp / num_key_value_heads ranks
///     gate_proj, up_proj       rows    intermediate_size / tp
///     o_proj, down_proj        columns the same heads / MLP slice (row-parallel: partial sums)
///     norms                    whole   replicated
public struct TensorParallelLayout: Sendable {
    /// Where a local tensor sits in its global tensor.
    public enum Split: Sendable, Equatable {
        case replicated
        /// Local rows are global rows `start ..< start + local rows` (a contiguous range of the
        /// flattened global tensor).
        case rows(start: Int)
        /// Local columns are global columns `start ..< start + local columns` of every row.
        case columns(start: Int)
    }

    public let degree: Int
    public let rank: Int
    public let globalConfig: LlamaConfig
    /// The sizes this rank's model sees.
    public let localConfig: LlamaConfig
    public let globalLayout: ParameterLayout
    public let localLayout: ParameterLayout
    /// This rank's vocabulary ids.
    public let vocabularyRange: Range<Int>
    /// Ranks holding the same KV heads (tp / num_key_value_heads when tp exceeds it, else 1);
    /// they are consecutive tensor ranks.
    public let keyValueReplicas: Int
    /// `splits[i]` places `localLayout.entries[i]`.
    public let splits: [Split]

    /// - Parameters:
    ///   - parts: what this rank's pipeline stage holds (the whole model by default).
    /// - Precondition: `ModelSplit.validate` accepted the config for this degree.
    public init(config: LlamaConfig, degree: Int, rank: Int, parts: [ModelPart]? = nil) {
        precondition(degree >= 1 && (0..<degree).contains(rank))
        let heads = config.numAttentionHeads / degree
        let kvHeads = config.numKeyValueHeads
        let replicas = degree > kvHeads ? degree / kvHeads : 1
        let localKVHeads = degree > kvHeads ? 1 : kvHeads / degree
        let kvHeadStart = degree > kvHeads ? rank / replicas : rank * localKVHeads
        let intermediate = config.intermediateSize / degree
        let vocabularyRange = Self.share(of: config.vocabSize, degree: degree, rank: rank)

        var local = config
        local.numAttentionHeads = heads
        local.numKeyValueHeads = localKVHeads
        local.headDim = config.headDim
        local.intermediateSize = intermediate
        local.vocabSize = vocabularyRange.count

        let d = config.headDim
        let localLayout = ParameterLayout(config: local, parts: parts ?? [.whole(config)])
        splits = localLayout.entries.map { entry in
            let name = entry.name
            if entry.shape.count == 1 { return .replicated }
            if name.hasSuffix("embed_tokens.weight") || name == "lm_head.weight" { return .rows(start: vocabularyRange.lowerBound) }
            if name.hasSuffix("q_proj.weight") { return .rows(start: rank * heads * d) }
            if name.hasSuffix("k_proj.weight") || name.hasSuffix("v_proj.weight") { return .rows(start: kvHeadStart * d) }
            if name.hasSuffix("o_proj.weight") { return .columns(start: rank * heads * d) }
            if name.hasSuffix("gate_proj.weight") || name.hasSuffix("up_proj.weight") { return .rows(start: rank * intermediate) }
            if name.hasSuffix("down_proj.weight") { return .columns(start: rank * intermediate) }
            preconditionFailure("no tensor-parallel split for \(name)")
        }
        self.degree = degree
        self.rank = rank
        self.globalConfig = config
        self.localConfig = local
        self.globalLayout = ParameterLayout(config: config)
        self.localLayout = localLayout
        self.vocabularyRange = vocabularyRange
        self.keyValueReplicas = replicas
    }

    /// Rank `rank`'s share of `count` rows split over `degree` ranks: as even as possible, the
    /// first `count % degree` ranks holding one more.
    public static func share(of count: Int, degree: Int, rank: Int) -> Range<Int> {
        let base = count / degree, extra = count % degree
        let start = rank * base + Swift.min(rank, extra)
        return start..<start + base + (rank < extra ? 1 : 0)
    }

    /// Whether the tensor at local index `index` is a KV projection shared with other ranks.
    public func isReplicatedKeyValue(_ index: Int) -> Bool {
        guard keyValueReplicas > 1 else { return false }
        let name = localLayout.entries[index].name
        return name.hasSuffix("k_proj.weight") || name.hasSuffix("v_proj.weight")
    }

    /// Whether this rank counts the tensor at local index `index` in global sums such as the
    /// gradient norm: every split tensor, and one copy of each replicated one.
    public func counts(_ index: Int) -> Bool {
        if splits[index] == .replicated { return rank == 0 }
        if isReplicatedKeyValue(index) { return rank % keyValueReplicas == 0 }
        return true
    }

    /// Copies this rank's slice of a global tensor (`globalEntry`'s values at `global`) into the
    /// local tensor at `local`.
    public func copySlice(_ index: Int, from global: UnsafePointer<Float>, to local: UnsafeMutablePointer<Float>) {
        let entry = localLayout.entries[index]
        guard let globalEntry = globalLayout.entry(named: entry.name) else { preconditionFailure("no global \(entry.name)") }
        switch splits[index] {
        case .replicated:
            local.update(from: global, count: entry.count)
        case .rows(let start):
            local.update(from: global + start * entry.shape[1], count: entry.count)
        case .columns(let start):
            let (rows, localColumns, globalColumns) = (entry.shape[0], entry.shape[1], globalEntry.shape[1])
            for row in 0..<rows {
                (local + row * localColumns).update(from: global + row * globalColumns + start, count: localColumns)
            }
        }
    }

    /// Fills a local parameter arena with this rank's slices of the global initialization
    /// (`LlamaModel.initialize`), so every tp degree starts from the same model.
    public func initialize(_ parameters: UnsafeMutablePointer<Float>, seed: UInt64) {
        for (index, entry) in localLayout.entries.enumerated() {
            guard let globalEntry = globalLayout.entry(named: entry.name) else { preconditionFailure("no global \(entry.name)") }
            let full = UnsafeMutablePointer<Float>.allocate(capacity: globalEntry.count)
            defer { full.deallocate() }
            LlamaModel.initialize(full, entry: globalEntry, config: globalConfig, seed: seed)
            copySlice(index, from: full, to: parameters + entry.offset)
        }
    }

    /// Where elements `elements` of the local tensor at index `index` lie in the flattened global
    /// tensor: runs of consecutive global elements, each with the local element it starts at
    /// (one run for whole and row-split tensors, one per row for column-split ones).
    public func globalRuns(_ index: Int, elements: Range<Int>) -> [(global: Range<Int>, localStart: Int)] {
        let entry = localLayout.entries[index]
        switch splits[index] {
        case .replicated:
            return [(elements, elements.lowerBound)]
        case .rows(let start):
            let offset = start * entry.shape[1]
            return [((elements.lowerBound + offset)..<(elements.upperBound + offset), elements.lowerBound)]
        case .columns(let start):
            guard !elements.isEmpty, let globalEntry = globalLayout.entry(named: entry.name) else { return [] }
            let (localColumns, globalColumns) = (entry.shape[1], globalEntry.shape[1])
            var runs: [(global: Range<Int>, localStart: Int)] = []
            var element = elements.lowerBound
            while element < elements.upperBound {
                let row = element / localColumns, column = element % localColumns
                let end = Swift.min(elements.upperBound, (row + 1) * localColumns)
                let globalStart = row * globalColumns + start + column
                if let last = runs.last, last.global.upperBound == globalStart {
                    // Whole rows (tp 1) are contiguous in the global tensor too: one run.
                    runs[runs.count - 1] = (last.global.lowerBound..<globalStart + (end - element), last.localStart)
                } else {
                    runs.append((globalStart..<globalStart + (end - element), element))
                }
                element = end
            }
            return runs
        }
    }
}
