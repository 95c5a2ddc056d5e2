import CBLAS
import Foundation
import Model
import Tensors

/// The tokens one engine step computes: rows from any number of sequences (prefill chunks and
/// single decode tokens alike), each with its position and the block table of its sequence.
public struct ForwardBatch {
    /// [rows] token ids.
    public var tokens: [Int32] = []
    /// [rows] each token's position in its sequence.
    public var positions: [Int32] = []
    /// [rows] index into `blockTables` of the row's sequence.
    public var sequenceIndices: [Int] = []
    /// Per sequence in the batch: its blocks, in position order.
    public var blockTables: [[Int]] = []
    /// The rows whose logits are wanted (the last computed token of a sequence), ascending.
    public var logitRows: [Int] = []
    /// The rows of sequences that use a LoRA adapter (an index into `InferenceModel.adapters`),
    /// each adapter's rows contiguous; rows in no run use the base alone. Empty for a base-only
    /// batch, which then runs exactly as without adapters.
    public var adapterRuns: [AdapterRun] = []

    public init() {}

    public var rowCount: Int { tokens.count }
}

/// Consecutive rows of a `ForwardBatch` that use one served adapter.
public struct AdapterRun: Sendable, Equatable {
    /// Index into `InferenceModel.adapters`.
    public var adapter: Int
    public var rows: Range<Int>

    public init(adapter: Int, rows: Range<Int>) {
        self.adapter = adapter
        self.rows = rows
    }
}

/// The decoder forward for inference over a paged KV cache: the layer `DecoderLayer` describes,
/// run in `DecoderLayer.forward`'s order as training runs it, with decode's kernels
/// (`DecodeLayerKernels`): each step computes only new tokens and attends to the keys and
/// values earlier steps left in `KVBlockPool`.
///
/// Projections that share an input are one product: q/k/v (adjacent in the layer block as
/// `ParameterLayout` lays them out, and so are their biases) and gate/up. Up to 16 rows (decode
/// batches) use `SmallBatchLinear`, which streams each weight row once for all rows; more rows
/// are sgemm.
///
/// Tensor parallelism (`tensorGroup`): every rank runs this forward on its own slices
/// (`weights.localConfig`: its query and KV heads, MLP slice and vocabulary slice); the partial
/// sums of the vocabulary-parallel embedding, o_proj and down_proj are all-reduced, and rank 0
/// gathers the logits. Rank 0's `forward` first sends the batch to the followers, which wait in
/// `follow`. Without a group none of this runs.
///
/// Served LoRA adapters (`adapters`, one rank only): after each projection's product over all
/// rows, each run of `ForwardBatch.adapterRuns` whose adapter targets that projection gets
/// `AdapterDelta` added on its rows alone; a batch without runs computes exactly as without
/// adapters.
///
/// Not thread-safe: the engine calls it from one thread.
public final class InferenceModel {
    /// The whole model's config (its vocabulary is the logits' width).
    public let config: LlamaConfig
    public let weights: InferenceWeights
    /// The ranks sharing this model, or nil on one rank.
    public let tensorGroup: InferenceTensorGroup?
    public let threads: KernelThreads
    /// LoRA adapters kept unmerged (`ServedAdapter`), applied to the rows of `ForwardBatch.adapterRuns`.
    public let adapters: [ServedAdapter]
    /// The most rows one `forward` takes (the engine's token budget per step).
    public let maximumRows: Int
    /// Whether one row takes `cblas_sgemv` instead of `SmallBatchLinear` (measured 15 % slower
    /// here; `MESHLM_DECODE_KERNEL=sgemv` selects it for comparison).
    public var useSGEMVForOneRow = ProcessInfo.processInfo.environment["MESHLM_DECODE_KERNEL"] == "sgemv"
    let rope: RoPETable
    let epsilon: Float
    /// The layer's description, shared with training.
    public let decoderLayer: DecoderLayer
    let layerOffsets: [LayerOffsets]
    private let layerStarts: [Int]
    private let embeddingOffset, finalNormOffset, languageModelHeadOffset: Int
    let tokenIds, tokenPositions: UnsafeMutablePointer<Int32>

    // Scratch, sized for `maximumRows` rows (`headRstd` for one row's heads).
    let residual, normalized, qkv, attention, gateUp, activation, projection, rstd, headRstd: Tensor
    /// Sparse layers' scratch (one element each for a dense model): [rows, E] router logits and
    /// probabilities, [rows, k] the chosen experts and their weights, and one expert's rows:
    /// inputs [rows, C], gate|up [rows, 2·I_e], activation [rows, I_e], outputs [rows, C].
    let routerLogits, routerProbabilities, routeWeights, expertInput, expertGateUp, expertActivation, expertOutput: Tensor
    let routeExperts: UnsafeMutablePointer<Int32>
    /// [rows, largest adapter rank]: x·Aᵀ of the adapters' rows (one element without adapters).
    let adapterIntermediate: Tensor
    private let logitsBuffer: Tensor
    /// Quantized weights only: the int8 activations of a product's input rows.
    private let quantizedScratch: QuantizedLinear.Scratch?
    /// Tensor parallelism only: this rank's [rows, vocabulary slice] logits and rank 0's
    /// rank-ordered gather of them.
    private let localLogits, gatheredLogits: Tensor?

    public init(weights: InferenceWeights, maximumRows: Int, threads: KernelThreads = .single,
                tensorGroup: InferenceTensorGroup? = nil, adapters: [ServedAdapter] = []) {
        precondition((weights.tensorParallel == nil) == (tensorGroup == nil),
                     "tensor-parallel weights need their tensor group, and only they")
        precondition(adapters.isEmpty || tensorGroup == nil, "unmerged adapters are served on one rank")
        // Local sizes below: the whole model on one rank, this rank's share under tensor parallelism.
        let config = weights.localConfig
        self.config = weights.config
        self.weights = weights
        self.tensorGroup = tensorGroup
        self.threads = threads
        self.adapters = adapters
        self.maximumRows = maximumRows
        let layout = weights.layout
        epsilon = Float(config.rmsNormEps)
        rope = RoPETable(config: config)
        func offset(_ name: String) -> Int {
            guard let entry = layout.entry(named: name) else { preconditionFailure("the layout has no \(name)") }
            return entry.offset
        }
        embeddingOffset = offset("model.embed_tokens.weight")
        finalNormOffset = offset("model.norm.weight")
        languageModelHeadOffset = config.tieWordEmbeddings ? embeddingOffset : offset("lm_head.weight")
        decoderLayer = DecoderLayer(config: config, layer: 0)  // its forward reads only the weights given
        layerOffsets = (0..<config.numHiddenLayers).map { LayerOffsets(layout: layout, layer: $0) }
        layerStarts = (0..<config.numHiddenLayers).map { layout.range(of: .layer($0)).lowerBound }
        // The fused products read q/k/v (and their biases) and gate/up as one matrix each.
        // A sparse layer's experts each run gate|up as one product too.
        for offsets in layerOffsets {
            let o = offsets.offsets
            let queryWidth = config.numAttentionHeads * config.headDim, kvWidth = config.numKeyValueHeads * config.headDim
            let mlpAdjacent = offsets.experts == 0
                ? o[.up] == o[.gate]! + config.intermediateSize * config.hiddenSize
                : (0..<offsets.experts).allSatisfy { o[.expertUp($0)] == o[.expertGate($0)]! + config.moeIntermediateSize * config.hiddenSize }
                    && (o[.sharedGate] == nil || o[.sharedUp] == o[.sharedGate]! + config.sharedExpertIntermediateSize * config.hiddenSize)
            precondition(o[.value] == o[.query]! + (queryWidth + kvWidth) * config.hiddenSize && mlpAdjacent
                         && (!decoderLayer.attentionBias || o[.valueBias] == o[.queryBias]! + queryWidth + kvWidth),
                         "ParameterLayout no longer keeps q/k/v, their biases and gate/up adjacent")
        }
        tokenIds = .allocate(capacity: maximumRows)
        tokenPositions = .allocate(capacity: maximumRows)
        let (c, i) = (config.hiddenSize, config.intermediateSize)
        let q = config.numAttentionHeads * config.headDim, k = config.numKeyValueHeads * config.headDim
        residual = Tensor(shape: [maximumRows, c])
        normalized = Tensor(shape: [maximumRows, c])
        qkv = Tensor(shape: [maximumRows, q + 2 * k])
        attention = Tensor(shape: [maximumRows, q])
        gateUp = Tensor(shape: [maximumRows, 2 * i])
        activation = Tensor(shape: [maximumRows, i])
        projection = Tensor(shape: [maximumRows, c])
        rstd = Tensor(shape: [maximumRows])
        headRstd = Tensor(shape: [Swift.max(config.numAttentionHeads, config.numKeyValueHeads)])
        let sparse = config.hasExperts ? 1 : 0
        // One expert's rows at a time, or the shared expert's (all rows; its gate logit in routeWeights' place).
        let (experts, topK) = (config.numLocalExperts, config.numExpertsPerTok)
        let expertWidth = Swift.max(config.moeIntermediateSize, config.sharedExpertIntermediateSize)
        routerLogits = Tensor(shape: [Swift.max(sparse * maximumRows * experts, 1)])
        routerProbabilities = Tensor(shape: [Swift.max(sparse * maximumRows * experts, 1)])
        routeWeights = Tensor(shape: [Swift.max(sparse * maximumRows * Swift.max(topK, 1), 1)])
        expertInput = Tensor(shape: [Swift.max(sparse * maximumRows * c, 1)])
        expertGateUp = Tensor(shape: [Swift.max(sparse * maximumRows * 2 * expertWidth, 1)])
        expertActivation = Tensor(shape: [Swift.max(sparse * maximumRows * expertWidth, 1)])
        expertOutput = Tensor(shape: [Swift.max(sparse * maximumRows * c, 1)])
        routeExperts = .allocate(capacity: Swift.max(sparse * maximumRows * topK, 1))
        routeExperts.initialize(repeating: 0, count: Swift.max(sparse * maximumRows * topK, 1))
        adapterIntermediate = Tensor(shape: [adapters.isEmpty ? 1 : maximumRows * adapters.map(\.rank).max()!])
        quantizedScratch = weights.quantized.isEmpty ? nil
            : QuantizedLinear.Scratch(rowCount: maximumRows, columnCount: Swift.max(c, q, i))
        // Whole-vocabulary logits only where sampling happens (rank 0 under tensor parallelism).
        let samples = tensorGroup?.isLeader ?? true
        logitsBuffer = Tensor(shape: samples ? [maximumRows, weights.config.vocabSize] : [1])
        if let tensorGroup {
            localLogits = Tensor(shape: [maximumRows, config.vocabSize])
            gatheredLogits = Tensor(shape: tensorGroup.isLeader ? [maximumRows, weights.config.vocabSize] : [1])
        } else {
            (localLogits, gatheredLogits) = (nil, nil)
        }
    }

    deinit {
        tokenIds.deallocate()
        tokenPositions.deallocate()
        routeExperts.deallocate()
    }

    /// Runs the batch, writing its keys and values into `cache`, and returns the logits of
    /// `batch.logitRows`: [logitRows.count, vocab], valid until the next call. Under tensor
    /// parallelism only rank 0 calls it (it sends the batch to the followers first).
    public func forward(_ batch: ForwardBatch, cache: KVBlockPool) -> UnsafeMutableBufferPointer<Float> {
        if let tensorGroup {
            precondition(tensorGroup.isLeader, "followers run batches through follow(cache:)")
            tensorGroup.send(batch)
        }
        return compute(batch, cache: cache)
    }

    /// A follower's loop under tensor parallelism: runs rank 0's batches (same block ids, its own
    /// KV heads in `cache`) until rank 0 calls `InferenceTensorGroup.stopFollowers`.
    public func follow(cache: KVBlockPool) {
        guard let tensorGroup else { preconditionFailure("follow(cache:) needs a tensor group") }
        while let batch = tensorGroup.receive() { _ = compute(batch, cache: cache) }
    }

    private func compute(_ batch: ForwardBatch, cache: KVBlockPool) -> UnsafeMutableBufferPointer<Float> {
        let n = batch.rowCount
        precondition(n >= 1 && n <= maximumRows, "a forward takes 1...\(maximumRows) rows, not \(n)")
        // This rank's sizes (all of them without tensor parallelism).
        let local = weights.localConfig
        let (c, v) = (local.hiddenSize, local.vocabSize)
        let base = weights.parameters.pointer
        let x = residual.pointer

        for row in 0..<n {
            tokenIds[row] = batch.tokens[row]
            tokenPositions[row] = batch.positions[row]
        }
        // Vocabulary-parallel: rows of other ranks' tokens stay zero until the sum.
        Embedding.forward(output: x, tokens: tokenIds, table: base + embeddingOffset,
                          tokenCount: n, vocabularySize: v, hiddenSize: c,
                          vocabularyStart: weights.tensorParallel?.vocabularyRange.lowerBound, threads: threads)
        tensorGroup?.sum(x, count: n * c)
        for layer in 0..<config.numHiddenLayers {
            let weights = LayerWeights(block: base + layerStarts[layer], offsets: layerOffsets[layer])
            decoderLayer.forward(weights, on: DecodeLayerKernels(model: self, batch: batch, cache: cache, layer: layer))
        }

        // Only the rows that sample need the norm and the [V, C] head.
        let logitCount = batch.logitRows.count
        for (index, row) in batch.logitRows.enumerated() {
            RMSNorm.forward(output: normalized.pointer + index * c, rstd: rstd.pointer + index, input: x + row * c,
                            weight: base + finalNormOffset, rowCount: 1, hiddenSize: c, epsilon: epsilon)
        }
        guard let tensorGroup, let localLogits, let gatheredLogits else {
            if logitCount > 0 {
                linear(output: logitsBuffer.pointer, input: normalized.pointer, weight: base + languageModelHeadOffset,
                       rowCount: logitCount, inputSize: c, outputSize: v)
            }
            return UnsafeMutableBufferPointer(start: logitsBuffer.pointer, count: logitCount * v)
        }
        // Vocabulary-parallel head: each rank computes its slice; rank 0 gathers [rows, vocab].
        guard logitCount > 0 else { return UnsafeMutableBufferPointer(start: logitsBuffer.pointer, count: 0) }
        linear(output: localLogits.pointer, input: normalized.pointer, weight: base + languageModelHeadOffset,
               rowCount: logitCount, inputSize: c, outputSize: v)
        tensorGroup.gatherLogits(local: localLogits.pointer, rows: logitCount, into: logitsBuffer.pointer,
                                 staging: gatheredLogits.pointer)
        let width = tensorGroup.isLeader ? config.vocabSize : 0
        return UnsafeMutableBufferPointer(start: logitsBuffer.pointer, count: logitCount * width)
    }

    /// `output = input · weightᵀ` ([rows, out] from [rows, in] and [out, in]). A quantized
    /// weight (found by its place in the arena) takes `QuantizedLinear` at every row count, so
    /// a row's result does not depend on what else the step computes.
    func linear(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        rowCount: Int, inputSize: Int, outputSize: Int) {
        if let quantizedScratch, let matrix = weights.quantizedMatrix(at: UnsafePointer(weights.parameters.pointer).distance(to: weight)) {
            precondition(matrix.rowCount == outputSize && matrix.columnCount == inputSize,
                         "a quantized weight of \(matrix.rowCount)×\(matrix.columnCount) for a \(outputSize)×\(inputSize) product")
            QuantizedLinear.multiply(output: output, input: input, weight: matrix, rowCount: rowCount,
                                     scratch: quantizedScratch, threads: threads)
        } else if rowCount == 1 && useSGEMVForOneRow {
            MatrixVector.multiply(output: output, matrix: weight, vector: input, rowCount: outputSize,
                                  columnCount: inputSize, threads: threads)
        } else if rowCount <= SmallBatchLinear.maximumRows {
            SmallBatchLinear.multiply(output: output, input: input, weight: weight, rowCount: rowCount,
                                      inputSize: inputSize, outputSize: outputSize, threads: threads)
        } else {
            Matmul.forward(output: output, input: input, weight: weight, bias: nil, rowCount: rowCount,
                           inputSize: inputSize, outputSize: outputSize, threads: threads)
        }
    }
}

/// `output = matrix · vector` for a row-major [rowCount, columnCount] matrix: batch-1 decode,
/// bound by streaming the matrix from memory. The output rows are cut into chunks of 64, each
/// one single-threaded `cblas_sgemv`, and threads share out whole chunks: the calls do not
/// depend on the thread count, so neither do the bits (as in `BLAS.multiply`).
public enum MatrixVector {
    public static func multiply(output: UnsafeMutablePointer<Float>, matrix: UnsafePointer<Float>, vector: UnsafePointer<Float>,
                                rowCount: Int, columnCount: Int, threads: KernelThreads = .single) {
        let chunk = 64
        threads.parallelFor(0..<(rowCount + chunk - 1) / chunk) { chunks in
            for index in chunks {
                let start = index * chunk
                let end = Swift.min(start + chunk, rowCount)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(end - start), Int32(columnCount), 1,
                            matrix + start * columnCount, Int32(columnCount), vector, 1, 0, output + start, 1)
            }
        }
    }
}
