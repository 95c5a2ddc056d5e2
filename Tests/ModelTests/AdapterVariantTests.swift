import Model
import Tensors
import TensorComparison
import Testing

/// LoRA dropout only acts in a training forward with a draw, and DoRA's magnitudes start where
/// PEFT starts them.
@Suite struct AdapterVariantTests {
    init() { useSingleThreadedBLAS() }

    func logits(_ lora: LoRAConfig, dropout: AdapterDropoutDraw?, forwardOnly: Bool = false) -> [Float] {
        let config = tinyConfig(modelType: .qwen2)
        let (batchSize, sequenceLength) = (2, 7)
        let parameters = randomParameters(ParameterLayout(config: config, lora: lora), seed: 31)
        let batch = Batch(batchSize: batchSize, sequenceLength: sequenceLength, vocabularySize: config.vocabSize, seed: 32)
        let model = LlamaModel(config: config, microBatchSize: batchSize, sequenceLength: sequenceLength, forwardOnly: forwardOnly,
                               lora: lora)
        model.adapterDropout = dropout
        return model.logits(tokens: batch.tokens, positions: batch.positions, parameters: parameters)
    }

    /// lora_dropout 0 draws nothing, a forward without a draw (evaluation) or of a forward-only
    /// model drops nothing, and a draw with p > 0 changes the logits, the same way every time.
    @Test(arguments: [false, true])
    func dropoutActsOnlyInTrainingForwards(dora: Bool) {
        let draw = AdapterDropoutDraw(seed: 7, step: 2, firstRow: 4)
        let plain = logits(LoRAConfig(rank: 3, alpha: 6, weightDecomposed: dora), dropout: nil)
        let dropped = LoRAConfig(rank: 3, alpha: 6, weightDecomposed: dora, dropout: 0.3)
        _ = expectSameBits(logits(LoRAConfig(rank: 3, alpha: 6, weightDecomposed: dora), dropout: draw), plain, "dropout 0 with a draw")
        _ = expectSameBits(logits(dropped, dropout: nil), plain, "no draw")
        _ = expectSameBits(logits(dropped, dropout: draw, forwardOnly: true), plain, "forward-only")
        let training = logits(dropped, dropout: draw)
        let difference = maxRelativeDifference(training, plain)
        print("LoRA dropout 0.3\(dora ? " (DoRA)" : ""): logits move by max rel \(difference)")
        #expect(difference > 1e-3)
        _ = expectSameBits(logits(dropped, dropout: draw), training, "the same draw, the same masks")
        #expect(TensorDifference(logits(dropped, dropout: AdapterDropoutDraw(seed: 7, step: 3, firstRow: 4)), training).differingCount > 0,
                "another step draws other masks")
    }

    /// With recomputation each layer's forward runs again in backward, redrawing the dropout
    /// masks and the DoRA norms: the gradients are bitwise those of a model that saved them.
    @Test func recomputationRedrawsTheSameMasks() {
        let config = tinyConfig(modelType: .qwen2)
        let lora = LoRAConfig(rank: 3, alpha: 6, weightDecomposed: true, dropout: 0.3)
        let layout = ParameterLayout(config: config, lora: lora)
        let frozen = Set(layout.entries.filter { !$0.block.isAdapter }.map(\.name))
        let batch = Batch(batchSize: 2, sequenceLength: 7, vocabularySize: config.vocabSize, seed: 34)
        func gradients(recompute: Bool) -> [Float] {
            let parameters = randomParameters(layout.freezing(frozen), seed: 35)
            let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 7, recompute: recompute, frozen: frozen, lora: lora)
            model.adapterDropout = AdapterDropoutDraw(seed: 1, step: 0, firstRow: 0)
            let total = model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: parameters)
            model.backward(lossScale: 1 / Float(total.targetCount), parameters: parameters)
            return Array(UnsafeBufferPointer(start: parameters.gradients.pointer, count: layout.count))
        }
        let stored = gradients(recompute: false)
        #expect(stored.contains { $0 != 0 })
        _ = expectSameBits(gradients(recompute: true), stored, "recomputed")
    }

    /// The masks keep each element with probability 1 − p, scaled by 1 / (1 − p), and depend
    /// on the global coordinates only: a block of columns drawn alone is the same block of the
    /// whole (a row-parallel rank's slice of a projection's input).
    @Test func dropoutMasksDependOnGlobalCoordinatesOnly() {
        let (rows, columns, p): (Int, Int, Float) = (64, 48, 0.25)
        let input = [Float](repeating: 1, count: rows * columns)
        var whole = [Float](repeating: 0, count: rows * columns)
        let key = AdapterDropout.key(seed: 3, step: 1, layer: 0, projection: 6)
        AdapterDropout.forward(output: &whole, input: input, key: key, probability: p, firstToken: 100, firstColumn: 0,
                               rowCount: rows, columnCount: columns)
        let kept = whole.filter { $0 != 0 }
        #expect(kept.allSatisfy { $0 == 1 / (1 - p) })
        let keptShare = Double(kept.count) / Double(whole.count)
        #expect(abs(keptShare - 0.75) < 0.03, "kept \(keptShare)")
        var right = [Float](repeating: 0, count: rows * 16)
        AdapterDropout.forward(output: &right, input: Array(input.prefix(rows * 16)), key: key, probability: p, firstToken: 100,
                               firstColumn: 32, rowCount: rows, columnCount: 16)
        _ = expectSameBits(right, (0..<rows).flatMap { whole[$0 * columns + 32..<($0 + 1) * columns] }, "columns 32..<48 drawn alone")
        var later = [Float](repeating: 0, count: columns)
        AdapterDropout.forward(output: &later, input: Array(input.prefix(columns)), key: key, probability: p, firstToken: 105,
                               firstColumn: 0, rowCount: 1, columnCount: columns)
        _ = expectSameBits(later, Array(whole[5 * columns..<6 * columns]), "token 105 drawn alone")
    }

    /// DoRA's magnitude starts at the row norms of its projection's initial W (PEFT: ‖W + s·B·A‖
    /// with B = 0), so a fresh DoRA adapter leaves the model as it was.
    @Test func magnitudesStartAtTheRowNormsOfW() {
        let config = tinyConfig(modelType: .qwen2)
        let lora = LoRAConfig(rank: 2, alpha: 4, targets: [.key, .down], weightDecomposed: true)
        let layout = ParameterLayout(config: config, lora: lora)
        let parameters = ArenaParameters(layout: layout)
        LlamaModel.initialize(parameters.parameters.pointer, layout: layout, config: config, seed: 9)
        var checked = 0
        for entry in layout.entries where isMagnitude(entry.role) {
            let weightName = String(entry.name.dropLast(LoRAConfig.magnitudeSuffix.count)) + ".weight"
            guard let weight = layout.entry(named: weightName) else {
                Issue.record("no \(weightName)")
                continue
            }
            let norms = WeightDecomposedAdapter.rowNorms(parameters.parameters.pointer + weight.offset, rowCount: weight.shape[0],
                                                         columnCount: weight.shape[1])
            _ = expectSameBits(parameters.values(of: entry), norms, entry.name)
            checked += 1
        }
        #expect(checked == 2 * config.numHiddenLayers)
        let base = ParameterLayout(config: config)
        let baseParameters = ArenaParameters(layout: base)
        LlamaModel.initialize(baseParameters.parameters.pointer, layout: base, config: config, seed: 9)
        let batch = Batch(batchSize: 1, sequenceLength: 7, vocabularySize: config.vocabSize, seed: 33)
        let adapted = LlamaModel(config: config, microBatchSize: 1, sequenceLength: 7, lora: lora)
            .logits(tokens: batch.tokens, positions: batch.positions, parameters: parameters)
        let plain = LlamaModel(config: config, microBatchSize: 1, sequenceLength: 7)
            .logits(tokens: batch.tokens, positions: batch.positions, parameters: baseParameters)
        #expect(maxRelativeDifference(adapted, plain) < 1e-5)
    }
}
