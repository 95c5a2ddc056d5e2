import Checkpoint
import Foundation
import Model
import Serving
import Tensors
import TensorComparison
import Testing

/// Quantized inference end to end: `meshlm ckpt quantize`'s checkpoint, its load, and the
/// forward over quantized projections against the f32 forward on deq(q(W)).
@Suite struct QuantizedServingTests {
    init() { useSingleThreadedBLAS() }

    /// Widths that are whole blocks of 32 (hidden 64, 4 heads of 16, 2 KV heads, MLP 96).
    static func config(tied: Bool = false) -> LlamaConfig {
        LlamaConfig(vocabSize: 300, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2, numAttentionHeads: 4,
                    numKeyValueHeads: 2, maxPositionEmbeddings: 128, ropeTheta: 10_000, tieWordEmbeddings: tied)
    }

    /// f32 weights whose quantized tensors are replaced by deq(q(W)): the reference a quantized
    /// model approximates (only its activations are rounded further, to int8 per block).
    static func dequantizedCopy(_ weights: InferenceWeights, format: QuantizedFormat, head: QuantizedFormat?) -> InferenceWeights {
        let copy = InferenceWeights(config: weights.config)
        copy.parameters.pointer.update(from: weights.parameters.pointer, count: weights.layout.count)
        for entry in copy.layout.entries {
            let entryFormat: QuantizedFormat? = InferenceWeights.quantizedRoles.contains(entry.role) ? format
                : entry.role == .languageModelHead ? head : nil
            guard let entryFormat else { continue }
            let matrix = QuantizedMatrix(quantizing: copy.parameters.pointer + entry.offset, rowCount: entry.shape[0],
                                         columnCount: entry.rowWidth, format: entryFormat)
            matrix.dequantize(rows: 0..<entry.shape[0], into: copy.parameters.pointer + entry.offset)
        }
        return copy
    }

    /// Prefills `prompt` then decodes `count` tokens greedily, or the tokens of `forced` when
    /// given (teacher forcing); returns the tokens and every step's logits.
    static func greedy(_ model: InferenceModel, prompt: [Int32], count: Int, forced: [Int32]? = nil) -> (tokens: [Int32], logits: [Float]) {
        let vocabulary = model.config.vocabSize
        let cache = KVBlockPool(blockCount: 12, blockSize: 4, layerCount: model.config.numHiddenLayers,
                                slotWidth: model.config.numKeyValueHeads * model.config.headDim)
        var tokens = prompt, produced: [Int32] = [], allLogits: [Float] = []
        var computed = 0
        for _ in 0..<count {
            var batch = ForwardBatch()
            batch.blockTables = [Array(0..<12)]
            for position in computed..<tokens.count {
                batch.tokens.append(tokens[position])
                batch.positions.append(Int32(position))
                batch.sequenceIndices.append(0)
            }
            batch.logitRows = [batch.rowCount - 1]
            let logits = Array(model.forward(batch, cache: cache))
            allLogits += logits
            computed = tokens.count
            let best = Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!)
            produced.append(best)
            tokens.append(forced?[produced.count - 1] ?? best)
        }
        precondition(allLogits.count == count * vocabulary)
        return (produced, allLogits)
    }

    /// Greedy decoding from the quantized weights against the f32 model on deq(q(W)), fed the
    /// reference's tokens: every step's logits within `tolerance` of the largest (the only
    /// difference is the int8 rounding of each product's input, ≤ s/2 per element with
    /// s = max|x| / 127 of its block, amplified through the layers), and the same greedy token
    /// at every step where the reference's best logit leads the second by more than twice that
    /// (closer calls may flip either way on rounding).
    @Test(arguments: QuantizedFormat.allCases, [false, true])
    func greedyMatchesDequantizedWeights(format: QuantizedFormat, tied: Bool) {
        // Measured up to 3.7 % on this random model (logits of a few units, nearly flat).
        let tolerance: Float = 0.05
        let config = Self.config(tied: tied)
        let vocabulary = config.vocabSize
        let weights = servingWeights(config, scale: 0.1)
        let reference = Self.dequantizedCopy(weights, format: format, head: tied ? nil : .q8_0)
        weights.quantize(format, head: .q8_0)
        let prompt = randomTokens(7, vocabulary: vocabulary, seed: 5)
        let steps = 24
        let expected = Self.greedy(InferenceModel(weights: reference, maximumRows: 16), prompt: prompt, count: steps)
        let quantized = Self.greedy(InferenceModel(weights: weights, maximumRows: 16), prompt: prompt, count: steps,
                                    forced: expected.tokens)
        var decisive = 0, disagreements: [Int] = []
        for step in 0..<steps {
            let logits = expected.logits[step * vocabulary..<(step + 1) * vocabulary]
            let scale = logits.map(abs).max()!
            let sorted = logits.sorted(by: >)
            let difference = relativeDifference(quantized.logits[step * vocabulary..<(step + 1) * vocabulary], logits)
            #expect(difference <= tolerance, "\(format) step \(step): logits differ by \(difference) of the largest")
            guard sorted[0] - sorted[1] > 2 * tolerance * scale else { continue }
            decisive += 1
            if quantized.tokens[step] != expected.tokens[step] { disagreements.append(step) }
        }
        print("\(format) tied \(tied): \(decisive) of \(steps) steps decisive; largest logit difference "
              + "\(relativeDifference(quantized.logits[...], expected.logits[...]))")
        #expect(disagreements.isEmpty, "greedy tokens differ at decisive steps \(disagreements)")
        #expect(decisive >= 4, "too few decisive steps (\(decisive)) for the comparison to mean something")
    }

    /// Eight sequences of 3 prompt tokens in one step (24 rows) give each sequence the same
    /// logits, bit for bit, as running it alone; and so do 8 one-token steps against one alone.
    @Test(arguments: QuantizedFormat.allCases)
    func batchInvariance(format: QuantizedFormat) {
        let config = Self.config()
        let weights = servingWeights(config, scale: 0.3)
        weights.quantize(format, head: format)
        let model = InferenceModel(weights: weights, maximumRows: 32, threads: KernelThreads(count: 2))
        let vocabulary = config.vocabSize
        let prompts = (0..<8).map { randomTokens(3, vocabulary: vocabulary, seed: UInt64(40 + $0)) }
        func run(_ sequences: [Int]) -> [Float] {
            let cache = KVBlockPool(blockCount: 8, blockSize: 4, layerCount: config.numHiddenLayers,
                                    slotWidth: config.numKeyValueHeads * config.headDim)
            var batch = ForwardBatch()
            for (index, sequence) in sequences.enumerated() {
                batch.blockTables.append([index])
                for position in 0..<3 {
                    batch.tokens.append(prompts[sequence][position])
                    batch.positions.append(Int32(position))
                    batch.sequenceIndices.append(index)
                    batch.logitRows.append(batch.rowCount - 1)
                }
            }
            return Array(model.forward(batch, cache: cache))
        }
        let together = run(Array(0..<8))
        for sequence in 0..<8 {
            let alone = run([sequence])
            expectSameBits(alone, Array(together[sequence * 3 * vocabulary..<(sequence + 1) * 3 * vocabulary]),
                           "sequence \(sequence) alone vs among 8")
        }
    }

    /// `ckpt quantize` writes a committed checkpoint that verifies, records the block dtypes,
    /// and loads to the same weights as quantizing in memory (same logits, bit for bit); reading
    /// its quantized tensors as f32 (what training and eval do) is refused by name.
    @Test(arguments: QuantizedFormat.allCases)
    func checkpointRoundTrip(format: QuantizedFormat) throws {
        let config = Self.config()
        let weights = servingWeights(config, scale: 0.3)
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = try writeCheckpoint(weights, directory: directory + "/f32")
        let report = try CheckpointQuantization.quantize(checkpoint: source, output: directory + "/quantized", format: format,
                                                         head: .q8_0, compressionLevel: 1)
        #expect(report.quantized == 2 * 7 + 1)
        let reader = try CheckpointReader.locate(directory + "/quantized")
        try reader.verify()
        #expect(try reader.tensor(named: "model.layers.1.mlp.down_proj.weight").dtype.rawValue == format.rawValue)
        #expect(try reader.tensor(named: "lm_head.weight").dtype == .q8_0)
        #expect(try reader.tensor(named: "model.embed_tokens.weight").dtype == .f32)
        let name = "model.layers.0.self_attn.q_proj.weight"
        #expect(throws: CheckpointError(.quantizedTensor, "checkpoint \(reader.stepDirectory) holds tensor \(name) quantized as \(format.rawValue) (a checkpoint for inference, written by `meshlm ckpt quantize`); this command needs f32 weights: give it the f32 checkpoint the quantized one was made from")) {
            _ = try reader.read(name: name)
        }

        let loaded = try InferenceWeights.load(checkpoint: directory + "/quantized")
        weights.quantize(format, head: .q8_0)
        #expect(loaded.bytesReadPerToken == weights.bytesReadPerToken)
        let prompt = randomTokens(5, vocabulary: config.vocabSize, seed: 8)
        let fromCheckpoint = Self.greedy(InferenceModel(weights: loaded, maximumRows: 16), prompt: prompt, count: 3)
        let inMemory = Self.greedy(InferenceModel(weights: weights, maximumRows: 16), prompt: prompt, count: 3)
        expectSameBits(fromCheckpoint.logits, inMemory.logits, "loaded vs quantized in memory")

        // Quantizing it again, or widths that are not whole blocks, are refused.
        #expect(throws: CheckpointError.self) {
            _ = try CheckpointQuantization.quantize(checkpoint: reader.stepDirectory, output: directory + "/again", format: format,
                                                    head: nil, compressionLevel: 1)
        }
        let narrow = try writeCheckpoint(servingWeights(servingConfig()), directory: directory + "/narrow")
        #expect(throws: CheckpointError(.badIndex, "\(narrow)/model_config.json: hidden_size 40 is not a multiple of 32, the block of \(format.rawValue) (each block holds 32 weights of one row); this model cannot be quantized in these formats")) {
            _ = try CheckpointQuantization.quantize(checkpoint: narrow, output: directory + "/narrow-q", format: format,
                                                    head: nil, compressionLevel: 1)
        }
    }

    /// Tensor parallelism reads each rank's rows and column blocks; a split that would cut a
    /// block (down_proj's 96 inputs over 2 ranks: 48 each) is refused naming the tensor.
    @Test func tensorParallelSplitOnBlockBoundaries() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = try writeCheckpoint(servingWeights(Self.config()), directory: directory + "/f32")
        _ = try CheckpointQuantization.quantize(checkpoint: source, output: directory + "/q", format: .q8_0, head: .q8_0, compressionLevel: 1)
        let step = try CheckpointReader.locate(directory + "/q").stepDirectory
        #expect(throws: ServingError.self) {
            _ = try InferenceWeights.load(checkpoint: step, tensorParallel: (degree: 2, rank: 1))
        }
        do {
            _ = try InferenceWeights.load(checkpoint: step, tensorParallel: (degree: 2, rank: 1))
        } catch {
            #expect("\(error)".contains("model.layers.0.mlp.down_proj.weight is quantized in blocks of 32 along its rows, but 2-way tensor parallelism gives each rank 48 of its 96 columns, which cuts blocks"))
        }

        // An MLP of 128 splits into 64 + 64: each rank's blocks are exactly its slice of the
        // whole model's (rows of the fused q/k/v of its heads, columns of down_proj).
        var wide = Self.config()
        wide.intermediateSize = 128
        let wideSource = try writeCheckpoint(servingWeights(wide), directory: directory + "/wide")
        _ = try CheckpointQuantization.quantize(checkpoint: wideSource, output: directory + "/wide-q", format: .q4_0, head: .q8_0,
                                                compressionLevel: 1)
        let wideStep = try CheckpointReader.locate(directory + "/wide-q").stepDirectory
        let whole = try InferenceWeights.load(checkpoint: wideStep)
        func matrix(_ weights: InferenceWeights, _ name: String) throws -> [Float] {
            let entry = try #require(weights.layout.entry(named: name))
            return try #require(weights.quantizedMatrix(at: entry.offset)).dequantized()
        }
        let down = "model.layers.1.mlp.down_proj.weight", query = "model.layers.0.self_attn.q_proj.weight"
        let wholeDown = try matrix(whole, down), wholeQKV = try matrix(whole, query)
        let (c, i, d) = (wide.hiddenSize, wide.intermediateSize, wide.headDim)
        for rank in 0..<2 {
            let part = try InferenceWeights.load(checkpoint: wideStep, tensorParallel: (degree: 2, rank: rank))
            let half = i / 2
            let expectedDown: [Float] = (0..<c).flatMap { (row: Int) -> ArraySlice<Float> in
                wholeDown[row * i + rank * half..<row * i + (rank + 1) * half]
            }
            expectSameBits(try matrix(part, down), expectedDown, "rank \(rank) down_proj columns")
            // Fused rows: this rank's 2 query heads, then its KV head's key and value rows.
            let (q, k) = (wide.numAttentionHeads * d, wide.numKeyValueHeads * d)
            let queryRows: [Int] = Array(rank * q / 2..<(rank + 1) * q / 2)
            let keyRows: [Int] = Array(q + rank * k / 2..<q + (rank + 1) * k / 2)
            let valueRows: [Int] = keyRows.map { $0 + k }
            let rows = queryRows + keyRows + valueRows
            let expectedQKV: [Float] = rows.flatMap { (row: Int) -> ArraySlice<Float> in wholeQKV[row * c..<(row + 1) * c] }
            expectSameBits(try matrix(part, query), expectedQKV, "rank \(rank) q/k/v rows")
        }
    }
}
