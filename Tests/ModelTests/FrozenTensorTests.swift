import Model
import TensorComparison
import Tensors
import Testing

/// Frozen tensors: backward computes no gradient for them (their weight-gradient kernels are
/// skipped) while every other gradient — and the input gradients through them — stays what it
/// was, bit for bit; a block whose every tensor is frozen acquires no gradients.
@Suite struct FrozenTensorTests {
    init() { useSingleThreadedBLAS() }

    @Test(arguments: [false, true])
    func frozenTensorsGetNoGradientAndChangeNoOther(tied: Bool) {
        let config = tinyConfig(tied: tied, layers: 3)
        let frozen = Set<String>(["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                                   "model.layers.0.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
                                   "model.norm.weight"]).union(ParameterLayout(config: config).entries(in: .layer(2)).map(\.name))
        let full = randomParameters(ParameterLayout(config: config), seed: 31)
        let partial = ArenaParameters(layout: ParameterLayout(config: config).freezing(frozen))
        partial.parameters.pointer.update(from: full.parameters.pointer, count: full.layout.count)
        let batch = Batch(batchSize: 2, sequenceLength: 7, vocabularySize: config.vocabSize, seed: 32)
        step(LlamaModel(config: config, microBatchSize: 2, sequenceLength: 7), batch, full)
        let spy = AccessSpy(partial)
        let model = LlamaModel(config: config, microBatchSize: 2, sequenceLength: 7, frozen: frozen)
        let total = model.forward(tokens: batch.tokens, targets: batch.targets, positions: batch.positions, parameters: spy)
        model.backward(lossScale: 1 / Float(total.targetCount), parameters: spy)
        for entry in full.layout.entries {
            let got = partial.gradientValues(of: entry)
            if frozen.contains(entry.name) {
                #expect(got.allSatisfy { $0 == 0 }, "\(entry.name) is frozen")
            } else {
                expectSameBits(got, full.gradientValues(of: entry), "\(entry.name)")
            }
        }
        // Layer 2 is frozen whole: its gradients are never acquired, nor the frozen table's.
        #expect(!spy.gradientBlocks.contains(.layer(2)))
        #expect(!spy.gradientBlocks.contains(.embedding))
        #expect(spy.gradientBlocks.contains(.layer(0)))
        // The head block holds model.norm (frozen) and, untied, lm_head (trained).
        #expect(spy.gradientBlocks.contains(.head) == !tied)
    }
}

/// Passes every call through to an `ArenaParameters`, recording which blocks' gradients were acquired.
final class AccessSpy: ParameterAccess {
    let inner: ArenaParameters
    var gradientBlocks: Set<ModelBlock> = []
    init(_ inner: ArenaParameters) { self.inner = inner }
    var layout: ParameterLayout { inner.layout }
    func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float> { inner.acquireParameters(block) }
    func releaseParameters(_ block: ModelBlock) {}
    func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        gradientBlocks.insert(block)
        return inner.acquireGradients(block)
    }
    func releaseGradients(_ block: ModelBlock) {}
}
