import Foundation
import Model
import Tensors

/// `DecoderLayer.forward`'s steps as an engine step runs them: on the step's rows (prefill chunks
/// and decode tokens of many sequences), in `InferenceModel`'s scratch, q/k/v and gate/up each as
/// one product (`SmallBatchLinear` or sgemm), attention over the paged KV cache, and under tensor
/// parallelism a sum over the group after each row-parallel projection (o_proj, down_proj).
///
/// The residual stream is `residual`, updated in place; `normalized` holds a sublayer's norm
/// output; `qkv` is [rows, Q + 2K] (q, k, v of a row side by side), `gateUp` [rows, 2I].
struct DecodeLayerKernels: DecoderLayerKernels {
    let model: InferenceModel
    let batch: ForwardBatch
    let cache: KVBlockPool
    let layer: Int

    private var config: LlamaConfig { model.weights.localConfig }
    private var rowCount: Int { batch.rowCount }
    private var queryWidth: Int { config.numAttentionHeads * config.headDim }
    private var keyValueWidth: Int { config.numKeyValueHeads * config.headDim }

    func normalize(_ sublayer: DecoderSublayer, weight: UnsafeMutablePointer<Float>) {
        RMSNorm.forward(output: model.normalized.pointer, rstd: model.rstd.pointer, input: model.residual.pointer,
                        weight: weight, rowCount: rowCount, hiddenSize: config.hiddenSize, epsilon: model.epsilon,
                        threads: model.threads)
    }

    func project(_ sublayer: DecoderSublayer,
                 _ projections: [(projection: Projection, weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>?)],
                 adapters: LayerAdapters?) {
        precondition(adapters == nil, "a checkpoint's own adapters are merged at load; served adapters come from ServedAdapter")
        // The projections are adjacent in the layer block (checked at init): one product each.
        let (output, width) = sublayer == .attention
            ? (model.qkv.pointer, queryWidth + 2 * keyValueWidth) : (model.gateUp.pointer, 2 * config.intermediateSize)
        model.linear(output: output, input: model.normalized.pointer, weight: projections[0].weight,
                     rowCount: rowCount, inputSize: config.hiddenSize, outputSize: width)
        // Each served adapter's term on its rows, in its projection's columns of the fused row.
        var column = 0
        for (projection, _, _) in projections {
            addAdapterTerms(projection, output: output + column, outputStride: width,
                            input: model.normalized.pointer, inputStride: config.hiddenSize)
            column += projection.shape(config).output
        }
        // q/k/v biases are adjacent too: one [Q + 2K] vector per row.
        guard let bias = projections[0].bias else { return }
        for row in 0..<rowCount {
            Residual.forward(output: output + row * width, a: output + row * width, b: bias, count: width)
        }
    }

    func normalizeHeads(queryWeight: UnsafeMutablePointer<Float>, keyWeight: UnsafeMutablePointer<Float>) {
        let (d, width) = (config.headDim, queryWidth + 2 * keyValueWidth)
        for row in 0..<rowCount {
            let heads = model.qkv.pointer + row * width
            RMSNorm.forward(output: heads, rstd: model.headRstd.pointer, input: heads, weight: queryWeight,
                            rowCount: config.numAttentionHeads, hiddenSize: d, epsilon: model.epsilon)
            RMSNorm.forward(output: heads + queryWidth, rstd: model.headRstd.pointer, input: heads + queryWidth,
                            weight: keyWeight, rowCount: config.numKeyValueHeads, hiddenSize: d, epsilon: model.epsilon)
        }
    }

    func rotate() {
        let width = queryWidth + 2 * keyValueWidth
        for row in 0..<rowCount {
            let heads = model.qkv.pointer + row * width
            let position = model.tokenPositions + row
            RoPE.forward(output: heads, input: heads, positions: position, table: model.rope,
                         tokenCount: 1, headCount: config.numAttentionHeads, headDimension: config.headDim)
            RoPE.forward(output: heads + queryWidth, input: heads + queryWidth, positions: position,
                         table: model.rope, tokenCount: 1, headCount: config.numKeyValueHeads, headDimension: config.headDim)
        }
    }

    func attend() {
        storeKeysAndValues()
        PagedAttention.forward(output: model.attention.pointer, qkv: model.qkv.pointer, batch: batch, cache: cache,
                               layer: layer, headCount: config.numAttentionHeads, kvHeadCount: config.numKeyValueHeads,
                               headDimension: config.headDim, threads: model.threads)
    }

    func activate() {
        let i = config.intermediateSize
        for row in 0..<rowCount {
            SwiGLU.forward(output: model.activation.pointer + row * i, gate: model.gateUp.pointer + row * 2 * i,
                           up: model.gateUp.pointer + row * 2 * i + i, count: i)
        }
    }

    func projectIntoStream(_ projection: Projection, weight: UnsafeMutablePointer<Float>, adapters: LayerAdapters?) {
        let (input, width) = projection == .output
            ? (model.attention.pointer, queryWidth) : (model.activation.pointer, config.intermediateSize)
        let c = config.hiddenSize
        let output = model.projection.pointer
        model.linear(output: output, input: input, weight: weight, rowCount: rowCount, inputSize: width, outputSize: c)
        addAdapterTerms(projection, output: output, outputStride: c, input: input, inputStride: width)
        // Row-parallel o_proj / down_proj: each rank's heads or MLP slice give a partial sum.
        model.tensorGroup?.sum(output, count: rowCount * c)
        Residual.forward(output: model.residual.pointer, a: model.residual.pointer, b: output, count: rowCount * c,
                         threads: model.threads)
    }

    /// A sparse layer: each row routed as training routes it (dropless), then expert by expert
    /// the rows that chose it gathered and run through its gate|up product, SwiGLU and down
    /// product (decode batches: `SmallBatchLinear`, whose sums do not depend on the other rows),
    /// and each row's weighted outputs summed in expert order into the stream.
    func mixExperts(_ w: ExpertWeights) {
        let (c, e, k, i) = (config.hiddenSize, config.numLocalExperts, config.numExpertsPerTok, config.moeIntermediateSize)
        let input = model.normalized.pointer
        model.linear(output: model.routerLogits.pointer, input: input, weight: w.router, rowCount: rowCount, inputSize: c, outputSize: e)
        for row in 0..<rowCount {
            _ = ExpertRouting.select(logits: model.routerLogits.pointer + row * e, expertCount: e, topK: k,
                                     normalizesTopK: config.normTopkProb, probabilities: model.routerProbabilities.pointer + row * e,
                                     chosen: model.routeExperts + row * k, weights: model.routeWeights.pointer + row * k)
        }
        let output = model.projection.pointer
        output.update(repeating: 0, count: rowCount * c)
        var rows: [(row: Int, weight: Float)] = []
        rows.reserveCapacity(rowCount)
        for expert in 0..<e {
            rows.removeAll(keepingCapacity: true)
            for row in 0..<rowCount {
                for slot in 0..<k where model.routeExperts[row * k + slot] == Int32(expert) {
                    rows.append((row, model.routeWeights.pointer[row * k + slot]))
                }
            }
            guard !rows.isEmpty else { continue }
            for (index, entry) in rows.enumerated() {
                (model.expertInput.pointer + index * c).update(from: input + entry.row * c, count: c)
            }
            // gate_e and up_e are adjacent in the layer block: one [2·I_e, C] product.
            model.linear(output: model.expertGateUp.pointer, input: model.expertInput.pointer, weight: w.gate[expert],
                         rowCount: rows.count, inputSize: c, outputSize: 2 * i)
            for index in rows.indices {
                SwiGLU.forward(output: model.expertActivation.pointer + index * i, gate: model.expertGateUp.pointer + index * 2 * i,
                               up: model.expertGateUp.pointer + index * 2 * i + i, count: i)
            }
            model.linear(output: model.expertOutput.pointer, input: model.expertActivation.pointer, weight: w.down[expert],
                         rowCount: rows.count, inputSize: i, outputSize: c)
            for (index, entry) in rows.enumerated() {
                let target = output + entry.row * c, source = model.expertOutput.pointer + index * c
                for column in 0..<c { target[column] += entry.weight * source[column] }
            }
        }
        // Qwen2-MoE's shared expert on every row: σ(m·g) · down(silu(gate(m)) · up(m)).
        if let shared = w.shared {
            let s = config.sharedExpertIntermediateSize
            model.linear(output: model.expertGateUp.pointer, input: input, weight: shared.gate, rowCount: rowCount, inputSize: c, outputSize: 2 * s)
            for row in 0..<rowCount {
                SwiGLU.forward(output: model.expertActivation.pointer + row * s, gate: model.expertGateUp.pointer + row * 2 * s,
                               up: model.expertGateUp.pointer + row * 2 * s + s, count: s)
            }
            model.linear(output: model.expertOutput.pointer, input: model.expertActivation.pointer, weight: shared.down,
                         rowCount: rowCount, inputSize: s, outputSize: c)
            model.linear(output: model.routeWeights.pointer, input: input, weight: shared.scale, rowCount: rowCount, inputSize: c, outputSize: 1)
            for row in 0..<rowCount {
                let sigma = 1 / (1 + Foundation.exp(-model.routeWeights.pointer[row]))
                let target = output + row * c, source = model.expertOutput.pointer + row * c
                for column in 0..<c { target[column] += sigma * source[column] }
            }
        }
        // Row-parallel down products: each rank's slice of every expert gives a partial sum.
        model.tensorGroup?.sum(output, count: rowCount * c)
        Residual.forward(output: model.residual.pointer, a: model.residual.pointer, b: output, count: rowCount * c,
                         threads: model.threads)
    }

    /// Adds `AdapterDelta` of every adapter run in the batch that adapts `projection` to its rows
    /// of `output` (nothing for a base-only batch).
    private func addAdapterTerms(_ projection: Projection, output: UnsafeMutablePointer<Float>, outputStride: Int,
                                 input: UnsafePointer<Float>, inputStride: Int) {
        let (outputSize, inputSize) = projection.shape(config)
        for run in batch.adapterRuns {
            let adapter = model.adapters[run.adapter]
            guard let factors = adapter.factors(layer: layer, projection) else { continue }
            let first = run.rows.lowerBound
            AdapterDelta.add(output: output + first * outputStride, outputStride: outputStride,
                             intermediate: model.adapterIntermediate.pointer, input: input + first * inputStride,
                             inputStride: inputStride, a: factors.a, bTransposed: factors.bTransposed, scaling: adapter.scaling,
                             rowCount: run.rows.count, inputSize: inputSize, outputSize: outputSize, rank: adapter.rank,
                             threads: model.threads)
        }
    }

    /// Writes each row's (rotated) key and its value into its sequence's block slot.
    private func storeKeysAndValues() {
        let width = cache.slotWidth
        let rowWidth = queryWidth + 2 * width
        for row in 0..<batch.rowCount {
            let position = Int(batch.positions[row])
            let table = batch.blockTables[batch.sequenceIndices[row]]
            let block = table[position / cache.blockSize]
            let slot = position % cache.blockSize
            let source = model.qkv.pointer + row * rowWidth + queryWidth
            (cache.keySlots(layer: layer, block: block) + slot * width).update(from: source, count: width)
            (cache.valueSlots(layer: layer, block: block) + slot * width).update(from: source + width, count: width)
        }
    }
}
