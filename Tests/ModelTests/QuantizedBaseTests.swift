import Model
import Tensors
import TensorComparison
import Testing

/// QLoRA in the model: LoRA over an NF4 base (`QuantizedBase`) against LoRA over the f32
/// dequantized base, and its bits across thread counts.
@Suite struct QuantizedBaseTests {
    init() { useSingleThreadedBLAS() }

    /// The tiny Qwen2 model (q/k/v biases) with adapters on every projection, the base frozen as
    /// LoRA freezes it; recomputation on and off.
    struct Setup {
        let config: LlamaConfig
        let lora: LoRAConfig
        let layout: ParameterLayout
        let frozen: Set<String>
        let batch: Batch

        init(embeddings: Bool = false, tied: Bool = false) {
            config = tinyConfig(tied: tied, modelType: .qwen2)
            lora = LoRAConfig(rank: 3, alpha: 6, quantizeBase: .nf4, quantizeEmbeddings: embeddings)
            let layout = ParameterLayout(config: config, lora: lora)
            frozen = Set(layout.entries.filter { !$0.block.isAdapter }.map(\.name))
            self.layout = layout.freezing(frozen)
            batch = Batch(batchSize: 2, sequenceLength: 9, vocabularySize: config.vocabSize, seed: 41)
        }

        func model(threads: Int = 1, recompute: Bool = false) -> LlamaModel {
            LlamaModel(config: config, microBatchSize: 2, sequenceLength: 9, recompute: recompute, frozen: frozen, lora: lora,
                       threads: KernelThreads(count: threads))
        }

        /// The random model, and its base quantized from it.
        func parameters() -> (ArenaParameters, QuantizedBase) {
            let parameters = randomParameters(layout, seed: 42)
            let base = QuantizedBase(format: .nf4, layout: layout, embeddings: lora.quantizeEmbeddings, threads: .single) { UnsafePointer(parameters.parameters.pointer + $0.offset) }
            return (parameters, base)
        }

        /// Loss and every adapter gradient.
        func run(_ model: LlamaModel, _ parameters: ArenaParameters) -> (loss: Float, gradients: [Float]) {
            parameters.gradients.zero()
            let total = step(model, batch, parameters)
            let gradients = layout.entries.filter(\.block.isAdapter).flatMap { parameters.gradientValues(of: $0) }
            return (Float(total.mean), gradients)
        }
    }

    /// With the NF4 base, the loss and the gradients of A and B equal LoRA's over an f32 base
    /// holding dequant(W4) to within sgemm's rounding (the tiles are separate sgemm calls:
    /// relative 1e-5; the quantization itself moves the loss by far more, checked too); the
    /// quantized model never reads the f32 projections (they are zeroed here). With
    /// `quantize_embeddings` the embedding lookup and lm_head (untied, and tied: one table for
    /// both) read NF4 too.
    @Test(arguments: [(false, false, false), (true, false, false), (false, true, false), (false, true, true)])
    func loraOverNF4EqualsLoRAOverTheDequantizedBase(recompute: Bool, embeddings: Bool, tied: Bool) {
        let setup = Setup(embeddings: embeddings, tied: tied)
        let (original, base) = setup.parameters()
        #expect(base.matrixCount == 7 * setup.config.numHiddenLayers + (embeddings ? (tied ? 1 : 2) : 0))
        let dequantized = original.copy(), zeroed = original.copy()
        for entry in setup.layout.entries where base.names.contains(entry.name) {
            var matrix: NF4Matrix?
            if case .layer(let index) = entry.block, let projection = QuantizedBase.projection(of: entry) {
                matrix = base.weight(projection, layer: index)
            } else {
                matrix = entry.role == .embedding ? base.embedding : base.head
            }
            guard let weight = matrix else {
                Issue.record("\(entry.name) was not quantized")
                continue
            }
            (dequantized.parameters.pointer + entry.offset).update(from: weight.dequantized(), count: entry.count)
            (zeroed.parameters.pointer + entry.offset).update(repeating: 0, count: entry.count)
        }
        let quantized = setup.model(recompute: recompute)
        quantized.quantizedBase = base
        let got = setup.run(quantized, zeroed)
        let reference = setup.run(setup.model(recompute: recompute), dequantized)
        let unquantized = setup.run(setup.model(recompute: recompute), original)
        print("QLoRA loss \(got.loss), LoRA over dequant(W4) \(reference.loss), over W \(unquantized.loss)")
        expectClose([got.loss], [reference.loss], relativeTolerance: 1e-5, "loss")
        expectClose(got.gradients, reference.gradients, relativeTolerance: 1e-5, "adapter gradients")
        #expect(abs(unquantized.loss - reference.loss) > 1e-4 * abs(reference.loss), "quantization should move the loss")
    }

    /// The QLoRA step gives the same bits on 1, 2 and 3 threads.
    @Test func anyThreadCountGivesTheSameBits() {
        let setup = Setup()
        let (original, base) = setup.parameters()
        let results = [1, 2, 3].map { threads in
            let model = setup.model(threads: threads)
            model.quantizedBase = base
            return setup.run(model, original.copy())
        }
        for index in 1..<3 {
            expectSameBits([results[index].loss], [results[0].loss], "loss, \(index + 1) threads vs 1")
            expectSameBits(results[index].gradients, results[0].gradients, "gradients, \(index + 1) threads vs 1")
        }
    }

    /// Merging the adapters into dequant(NF4(W)) gives a plain f32 model whose logits are the
    /// QLoRA model's (to sgemm rounding); merging into W gives other logits, and the output
    /// names each choice.
    @Test func mergedIntoTheDequantizedBaseGivesTheQLoRALogits() {
        let setup = Setup()
        let (parameters, base) = setup.parameters()
        // B away from zero, so the adapters matter.
        for entry in setup.layout.entries where entry.block.isAdapter {
            for index in 0..<entry.count { parameters.parameters.pointer[entry.offset + index] *= 1.5 }
        }
        let quantized = setup.model()
        quantized.quantizedBase = base
        let tokens = setup.batch.tokens, positions = setup.batch.positions
        let expected = quantized.logits(tokens: tokens, positions: positions, parameters: parameters)
        let plainLayout = ParameterLayout(config: setup.config)
        var logits: [QLoRAMergeBase: [Float]] = [:]
        for choice in QLoRAMergeBase.allCases {
            let merged = ArenaParameters(layout: plainLayout)
            for entry in plainLayout.entries {
                let values = parameters.values(of: setup.layout.entry(named: entry.name)!)
                var result = values
                if let projection = QuantizedBase.projection(of: entry), case .layer(let layer) = entry.block {
                    let prefix = "model.layers.\(layer).\(projection.path)"
                    let a = parameters.values(of: setup.layout.entry(named: prefix + ".lora_A.weight")!)
                    let b = parameters.values(of: setup.layout.entry(named: prefix + ".lora_B.weight")!)
                    result = choice.base(values, rowCount: entry.shape[0], columnCount: entry.shape[1])
                    LowRankAdapter.merge(weight: &result, a: a, b: b, magnitude: nil, scaling: setup.lora.scaling,
                                         inputSize: entry.shape[1], outputSize: entry.shape[0], rank: setup.lora.rank)
                }
                (merged.parameters.pointer + entry.offset).update(from: result, count: entry.count)
            }
            let model = LlamaModel(config: setup.config, microBatchSize: 2, sequenceLength: 9)
            logits[choice] = model.logits(tokens: tokens, positions: positions, parameters: merged)
        }
        expectClose(logits[.dequantized]!, expected, relativeTolerance: 1e-5, "merged into dequant(NF4(W))")
        #expect(maxRelativeDifference(logits[.original]!, expected) > 1e-3, "merging into W should differ")
        #expect(QLoRAMergeBase.dequantized.description.contains("dequant(NF4(W))"))
        #expect(QLoRAMergeBase.original.description.contains("original f32 W"))
    }

    /// `lora.quantize_base` decodes `nf4`, refuses other formats and DoRA, naming the key.
    @Test func configKeyIsValidated() throws {
        #expect(throws: (any Error).self) { try LoRAConfig(rank: 4, alpha: 8, weightDecomposed: true, quantizeBase: .nf4).validate() }
        do {
            try LoRAConfig(rank: 4, alpha: 8, weightDecomposed: true, quantizeBase: .nf4).validate()
        } catch {
            #expect("\(error)".contains("quantize_base") && "\(error)".contains("use_dora"), "\(error)")
        }
        try LoRAConfig(rank: 4, alpha: 8, quantizeBase: .nf4).validate()
    }
}
