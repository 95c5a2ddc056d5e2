import Checkpoint
import Model
import Tensors

/// Weight-only quantized projections (issue 18): a projection held as a `QuantizedMatrix`
/// replaces its f32 copy in the arena, whose pages are returned to the system. `InferenceModel`
/// finds the quantized matrix of a product by the arena offset of its weight: q/k/v are one
/// matrix from the query's offset (their rows concatenated, as the f32 arena keeps them
/// adjacent), gate/up one from the gate's, o_proj, down_proj and the language-model head
/// their own. Embeddings stay f32 (a token reads one row of them).
extension InferenceWeights {
    /// The roles a quantized checkpoint stores in a block format (the head optionally).
    public static let quantizedRoles: Set<TensorRole> = [.query, .key, .value, .output, .gate, .up, .down]

    /// The quantized matrix whose product starts at arena offset `offset`, if any.
    public func quantizedMatrix(at offset: Int) -> QuantizedMatrix? { quantized[offset] }

    /// Bytes of the weights a token's forward reads from memory at batch 1: every quantized
    /// matrix's blocks, every other matrix's f32 (one embedding row, not the table, unless the
    /// head is tied to it).
    public var bytesReadPerToken: Int {
        var total = 0
        for entry in layout.entries {
            if entry.role == .embedding {
                total += 4 * (localConfig.tieWordEmbeddings ? entry.count : entry.rowWidth)
            } else if quantizedEntries.contains(entry.name) {
                continue
            } else {
                total += 4 * entry.count
            }
        }
        return total + quantized.values.reduce(0) { $0 + $1.byteCount }
    }

    /// Bytes the weights hold in memory: the arena less the quantized tensors' released floats,
    /// plus the quantized blocks.
    public var residentWeightBytes: Int {
        let released = layout.entries.filter { quantizedEntries.contains($0.name) }.reduce(0) { $0 + 4 * $1.count }
        return 4 * layout.count - released + quantized.values.reduce(0) { $0 + $1.byteCount }
    }

    /// Whether any projection is quantized.
    public var isQuantized: Bool { !quantized.isEmpty }

    /// Quantizes this arena's projections to `format` (and the untied head to `head`, unless nil)
    /// in place: what `meshlm ckpt quantize` stores, for benchmarks and tests on the same weights.
    public func quantize(_ format: QuantizedFormat, head: QuantizedFormat?, threads: KernelThreads = .single) {
        precondition(quantized.isEmpty, "weights quantized twice")
        var matrices: [String: QuantizedMatrix] = [:]
        for entry in layout.entries {
            guard let entryFormat = Self.format(of: entry.role, layers: format, head: head, tied: localConfig.tieWordEmbeddings) else { continue }
            matrices[entry.name] = QuantizedMatrix(quantizing: parameters.pointer + entry.offset, rowCount: entry.shape[0],
                                                   columnCount: entry.rowWidth, format: entryFormat, threads: threads)
        }
        install(matrices)
    }

    /// The format a tensor of `role` takes, or nil where it stays f32.
    static func format(of role: TensorRole, layers: QuantizedFormat, head: QuantizedFormat?, tied: Bool) -> QuantizedFormat? {
        if quantizedRoles.contains(role) { return layers }
        if role == .languageModelHead && !tied { return head }
        return nil
    }

    /// Reads tensor `entry` (index `index` of the local layout), stored in a block format, into a
    /// `QuantizedMatrix` of this rank's shape. Under tensor parallelism every run of the split
    /// must start and end on a block boundary (row splits always do; a column split of o_proj or
    /// down_proj must cut the input dimension at multiples of 32).
    func readQuantized(_ entry: ParameterLayout.Entry, index: Int, dtype: CheckpointDType,
                       from reader: CheckpointReader) throws(ServingError) -> QuantizedMatrix {
        guard let format = QuantizedFormat(rawValue: dtype.rawValue) else {
            throw ServingError(.checkpoint, "checkpoint \(reader.stepDirectory): tensor \(entry.name) has dtype \(dtype.rawValue), which serving does not read")
        }
        let runs = tensorParallel?.globalRuns(index, elements: 0..<entry.count) ?? [(0..<entry.count, 0)]
        let block = QuantizedFormat.blockSize
        if runs.contains(where: { $0.global.lowerBound % block != 0 || $0.global.count % block != 0 }) || entry.rowWidth % block != 0 {
            let columns = tensorParallel?.globalLayout.entry(named: entry.name)?.shape.last ?? entry.rowWidth
            throw ServingError(.checkpoint, "checkpoint \(reader.stepDirectory): tensor \(entry.name) is quantized in blocks of \(block) along its rows, but \(tensorParallel?.degree ?? 1)-way tensor parallelism gives each rank \(entry.rowWidth) of its \(columns) columns, which cuts blocks; serve it on a number of ranks that splits \(columns) into multiples of \(block), or serve the f32 checkpoint")
        }
        let matrix = QuantizedMatrix(format: format, rowCount: entry.shape[0], columnCount: entry.rowWidth)
        do {
            for run in runs {
                try reader.readBlocks(name: entry.name, elements: run.global,
                                      into: matrix.blocks + format.byteCount(elements: run.localStart))
            }
        } catch {
            throw ServingError(.checkpoint, error.description)
        }
        return matrix
    }

    /// Fuses the per-tensor matrices into the products `InferenceModel` runs, records them by
    /// arena offset and releases the f32 copies' pages.
    func install(_ matrices: [String: QuantizedMatrix]) {
        var remaining = matrices
        func take(_ name: String) -> (QuantizedMatrix, ParameterLayout.Entry)? {
            guard let matrix = remaining.removeValue(forKey: name), let entry = layout.entry(named: name) else { return nil }
            return (matrix, entry)
        }
        for layer in 0..<localConfig.numHiddenLayers {
            let prefix = "model.layers.\(layer)."
            for group in [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["mlp.gate_proj", "mlp.up_proj"]] {
                let parts = group.compactMap { take(prefix + $0 + ".weight") }
                guard let first = parts.first else { continue }
                precondition(parts.count == group.count && parts.allSatisfy { $0.0.format == first.0.format },
                             "\(prefix)\(group) must be quantized alike (checked when loading)")
                quantized[first.1.offset] = Self.concatenated(parts.map(\.0))
                for (_, entry) in parts { release(entry) }
            }
        }
        for (name, matrix) in remaining {
            guard let entry = layout.entry(named: name) else { continue }
            quantized[entry.offset] = matrix
            release(entry)
        }
    }

    private func release(_ entry: ParameterLayout.Entry) {
        quantizedEntries.insert(entry.name)
        MemoryPages.release(parameters.pointer + entry.offset, count: entry.count)
    }

    /// The rows of `parts` one after another (same format and width).
    static func concatenated(_ parts: [QuantizedMatrix]) -> QuantizedMatrix {
        guard parts.count > 1 else { return parts[0] }
        let first = parts[0]
        let fused = QuantizedMatrix(format: first.format, rowCount: parts.reduce(0) { $0 + $1.rowCount }, columnCount: first.columnCount)
        var offset = 0
        for part in parts {
            (fused.blocks + offset).copyMemory(from: part.blocks, byteCount: part.byteCount)
            offset += part.byteCount
        }
        return fused
    }
}
