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
///     q/k/v_proj.bias          rows    as their projections (qwen2)
///     lora_A, lora_B           with their projection: B's rows of a column-parallel one, A's
///                              columns of a row-parallel one; the other replicated, its
///                              gradient summed over the group
///     lora_magnitude_vector    DoRA's m, with its projection's outputs: rows of a column-parallel
///                              one; replicated for a row-parallel one, its gradient summed over
///                              the group (each rank's direction covers its input columns only)
///     o_proj, down_proj        columns the same heads / MLP slice (row-parallel: partial sums)
///     score (a scalar head)    whole   replicated: every rank scores the gathered final norm
///     norms                    whole   replicated (q_norm / k_norm of qwen3 too: one [head_dim]
///                                      weight that every head uses, so each rank's gradient of it
///                                      covers only its heads and is summed over the group)
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
    public init(config: LlamaConfig, degree: Int, rank: Int, parts: [ModelPart]? = nil, lora: LoRAConfig? = nil) {
        precondition(degree >= 1 && (0..<degree).contains(rank))
        let heads = config.numAttentionHeads / degree
        let kvHeads = config.numKeyValueHeads
        let replicas = degree > kvHeads ? degree / kvHeads : 1
        let localKVHeads = degree > kvHeads ? 1 : kvHeads / degree
        let kvHeadStart = degree > kvHeads ? rank / replicas : rank * localKVHeads
        let intermediate = config.intermediateSize / degree
        let expertIntermediate = config.moeIntermediateSize / degree
        let sharedIntermediate = config.sharedExpertIntermediateSize / degree
        let vocabularyRange = Self.share(of: config.vocabSize, degree: degree, rank: rank)

        var local = config
        local.numAttentionHeads = heads
        local.numKeyValueHeads = localKVHeads
        local.headDim = config.headDim
        local.intermediateSize = intermediate
        local.moeIntermediateSize = expertIntermediate
        local.sharedExpertIntermediateSize = sharedIntermediate
        local.vocabSize = vocabularyRange.count

        let d = config.headDim
        let localLayout = ParameterLayout(config: local, parts: parts ?? [.whole(config)], lora: lora)
        /// Where a projection's rows (column-parallel) or columns (row-parallel) start on this rank.
        func start(_ projection: Projection) -> Int {
            switch projection {
            case .query, .output: rank * heads * d
            case .key, .value: kvHeadStart * d
            case .gate, .up, .down: rank * intermediate
            }
        }
        splits = localLayout.entries.map { entry in
            switch entry.role {
            // A LoRA adapter is split with its projection: a column-parallel one's B by rows (its
            // outputs), a row-parallel one's A by columns (its inputs); the other is replicated.
            case .loraA(let projection): projection.isRowParallel ? .columns(start: start(projection)) : .replicated
            case .loraB(let projection), .loraMagnitude(let projection):
                projection.isRowParallel ? .replicated : .rows(start: start(projection))
            case .inputNorm, .postAttentionNorm, .finalNorm, .queryNorm, .keyNorm, .score: .replicated
            case .embedding, .languageModelHead: .rows(start: vocabularyRange.lowerBound)
            case .query, .queryBias: .rows(start: rank * heads * d)
            case .key, .value, .keyBias, .valueBias: .rows(start: kvHeadStart * d)
            case .output: .columns(start: rank * heads * d)
            case .gate, .up: .rows(start: rank * intermediate)
            case .down: .columns(start: rank * intermediate)
            // Each expert is split as a dense MLP is; every rank routes all tokens alike.
            case .router, .sharedExpertGate: .replicated
            case .sharedGate, .sharedUp: .rows(start: rank * sharedIntermediate)
            case .sharedDown: .columns(start: rank * sharedIntermediate)
            case .expertGate, .expertUp: .rows(start: rank * expertIntermediate)
            case .expertDown: .columns(start: rank * expertIntermediate)
            }
        }
        self.degree = degree
        self.rank = rank
        self.globalConfig = config
        self.localConfig = local
        self.globalLayout = ParameterLayout(config: config, lora: lora)
        self.localLayout = localLayout
        self.vocabularyRange = vocabularyRange
        self.keyValueReplicas = replicas
    }

    /// The global column of `projection`'s first local input column: this rank's slice of a
    /// row-parallel projection's input (its heads, its MLP slice), 0 for a column-parallel one.
    public func inputStart(of projection: Projection) -> Int {
        for (index, entry) in localLayout.entries.enumerated() where entry.role == projection.role {
            if case .columns(let start) = splits[index] { return start }
            return 0
        }
        return 0
    }

    /// Rank `rank`'s share of `count` rows split over `degree` ranks: as even as possible, the
    /// first `count % degree` ranks holding one more.
    public static func share(of count: Int, degree: Int, rank: Int) -> Range<Int> {
        let base = count / degree, extra = count % degree
        let start = rank * base + Swift.min(rank, extra)
        return start..<start + base + (rank < extra ? 1 : 0)
    }

    /// Whether the tensor at local index `index` is a KV projection (or its bias) shared with
    /// other ranks.
    public func isReplicatedKeyValue(_ index: Int) -> Bool {
        guard keyValueReplicas > 1 else { return false }
        switch localLayout.entries[index].role {
        case .key, .value, .keyBias, .valueBias, .loraB(.key), .loraB(.value), .loraMagnitude(.key), .loraMagnitude(.value): return true
        default: return false
        }
    }

    /// The ranks over which the gradient of the tensor at local index `index` is computed only in
    /// part, and must be summed before the data-parallel reduction: replicated KV projections over
    /// the ranks sharing them (each saw its own query heads), the heads' norms over the whole group
    /// (each saw its own heads), the other norms over the whole group with sequence parallelism
    /// (each saw its own token rows).
    public func partialGradientGroup(_ index: Int, sequenceParallel: Bool) -> PartialGradientGroup? {
        if isReplicatedKeyValue(index) { return .keyValueReplicas }
        switch localLayout.entries[index].role {
        case .queryNorm, .keyNorm: return degree > 1 ? .tensorGroup : nil
        // The replicated half of a LoRA adapter sees only this rank's share of its projection.
        case .loraA(let projection) where !projection.isRowParallel: return degree > 1 ? .tensorGroup : nil
        case .loraB(let projection) where projection.isRowParallel: return degree > 1 ? .tensorGroup : nil
        case .loraMagnitude(let projection) where projection.isRowParallel: return degree > 1 ? .tensorGroup : nil
        case .inputNorm, .postAttentionNorm, .finalNorm: return sequenceParallel && degree > 1 ? .tensorGroup : nil
        default: return nil
        }
    }

    /// See `partialGradientGroup`.
    public enum PartialGradientGroup: Sendable {
        case keyValueReplicas, tensorGroup
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
            local.update(from: global + start * entry.rowWidth, count: entry.count)
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
            let offset = start * entry.rowWidth
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
