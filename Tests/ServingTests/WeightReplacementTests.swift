import Model
import Parallel
import Serving
import Tensors
import Testing

/// In-place weight replacement (`Engine.replaceWeights`): the engine then generates what a fresh
/// engine on the new weights generates, never reuses a prefix computed with the old ones, and
/// refuses while busy or when handed weights of another shape, changing nothing.
@Suite struct WeightReplacementTests {
    init() { useSingleThreadedBLAS() }

    let config = servingConfig()

    func engine(_ weights: InferenceWeights) -> Engine {
        Engine(weights: weights, configuration: EngineConfiguration(blockCount: 32, blockSize: 4), tokenizer: nil)
    }

    func greedy(_ engine: Engine, _ prompt: [Int32]) throws -> [Int32] {
        let id = try engine.add(prompt: prompt, parameters: .greedy(maxTokens: 6))
        return engine.runToCompletion()[id] ?? []
    }

    @Test func replacedWeightsGiveTheNewModelAndDropCachedPrefixes() throws {
        let old = servingWeights(config, seed: 3), new = servingWeights(config, seed: 9)
        let prompt = randomTokens(13, vocabulary: config.vocabSize, seed: 31)
        let oldTokens = referenceGreedy(old, prompt: prompt, count: 6)
        let newTokens = referenceGreedy(new, prompt: prompt, count: 6)
        try #require(oldTokens != newTokens, "the two models must disagree for the test to mean anything")

        // The engine's own copy of the old weights: replacement writes into its arena.
        let engine = engine(servingWeights(config, seed: 3))
        #expect(try greedy(engine, prompt) == oldTokens)
        // The prompt's three full blocks are now cached: a repeat reuses them.
        #expect(try greedy(engine, prompt) == oldTokens)
        #expect(engine.statistics.sharedBlocks == 3)
        #expect(engine.cache.cachedPrefixBlockCount > 0)

        try engine.replaceWeights(from: new.parameters.pointer, layout: new.layout)
        #expect(engine.cache.cachedPrefixBlockCount == 0)
        #expect(try greedy(engine, prompt) == newTokens)
        #expect(engine.statistics.sharedBlocks == 3, "a prefix computed with the old weights was reused")

        // The closure form, back to the old weights.
        try engine.replaceWeights { layout, parameters in
            #expect(layout.count == old.layout.count && parameters.count == layout.count)
            _ = parameters.update(fromContentsOf: UnsafeBufferPointer(start: old.parameters.pointer, count: old.layout.count))
        }
        #expect(engine.cache.cachedPrefixBlockCount == 0)
        #expect(try greedy(engine, prompt) == oldTokens)
        #expect(engine.statistics.freeBlocks == 32)
    }

    @Test func busyEngineRefusesNewWeights() throws {
        let weights = servingWeights(config, seed: 3)
        let engine = engine(weights)
        let before = weights.parameters.pointer[0]
        let other = servingWeights(config, seed: 9)
        let id = try engine.add(prompt: [1, 2, 3], parameters: .greedy(maxTokens: 20))
        try engine.add(prompt: [4, 5], parameters: .greedy(maxTokens: 20))
        _ = engine.step()
        try engine.add(prompt: [6], parameters: .greedy(maxTokens: 20))
        let message = "the engine's weights can be replaced only while it is idle, but 2 sequences are running and 1 waiting: finish them (runSamplesToCompletion) or cancel them first"
        #expect(throws: ServingError(.engineBusy, message)) {
            try engine.replaceWeights(from: other.parameters.pointer, layout: other.layout)
        }
        #expect(throws: ServingError(.engineBusy, message)) {
            try engine.replaceWeights { _, _ in Issue.record("a busy engine ran the update") }
        }
        #expect(weights.parameters.pointer[0] == before)
        engine.cancel(id)
        _ = engine.runToCompletion()
        try engine.replaceWeights(from: other.parameters.pointer, layout: other.layout)
        #expect(weights.parameters.pointer[0] == other.parameters.pointer[0])
    }

    @Test func weightsOfAnotherShapeAreRefusedUnchanged() throws {
        let weights = servingWeights(config, seed: 3)
        let engine = engine(weights)
        _ = try greedy(engine, randomTokens(9, vocabulary: config.vocabSize, seed: 2))
        let cached = engine.cache.cachedPrefixBlockCount
        let snapshot = Array(UnsafeBufferPointer(start: weights.parameters.pointer, count: weights.layout.count))

        let wider = servingWeights(servingConfig(vocabulary: 320), seed: 9)
        #expect(throws: ServingError(.invalidRequest, "tensor model.embed_tokens.weight has shape [320, 40] in the new weights but the served model's is [300, 40]: the new weights must come from a model of the same config")) {
            try engine.replaceWeights(from: wider.parameters.pointer, layout: wider.layout)
        }
        let tied = servingWeights(servingConfig(tied: true), seed: 9)
        #expect(throws: ServingError(.invalidRequest, "the new weights have no tensor lm_head.weight: hand over every tensor of the model (ParameterLayout(config:) of its config)")) {
            try engine.replaceWeights(from: tied.parameters.pointer, layout: tied.layout)
        }
        #expect(Array(UnsafeBufferPointer(start: weights.parameters.pointer, count: weights.layout.count)) == snapshot)
        #expect(engine.cache.cachedPrefixBlockCount == cached, "a refused replacement must not drop the cache")
    }

    /// A tensor-parallel rank given the whole model takes exactly its slices: checked against
    /// `TensorParallelLayout.globalRuns` (the map the checkpoint loader reads slices with), for
    /// tp 2 and tp 4 (KV heads replicated, uneven vocabulary), and a rank-shaped arena is copied
    /// as it is.
    @Test(arguments: [2, 4]) func tensorParallelRanksTakeTheirSlices(degree: Int) throws {
        let config = servingConfig(vocabulary: 301)
        let whole = servingWeights(config, seed: 12)
        for rank in 0..<degree {
            let split = try InferenceWeights.tensorParallelLayout(config: config, degree: degree, rank: rank, source: "test")
            let local = InferenceWeights(tensorParallel: split)
            try local.copyParameters(from: whole.parameters.pointer, layout: whole.layout)
            for (index, entry) in local.layout.entries.enumerated() {
                let globalOffset = try #require(whole.layout.entry(named: entry.name)).offset
                var expected = [Float](repeating: .nan, count: entry.count)
                for run in split.globalRuns(index, elements: 0..<entry.count) {
                    for (step, element) in run.global.enumerated() {
                        expected[run.localStart + step] = whole.parameters.pointer[globalOffset + element]
                    }
                }
                let got = Array(UnsafeBufferPointer(start: local.parameters.pointer + entry.offset, count: entry.count))
                #expect(got == expected, "tp \(degree) rank \(rank): \(entry.name)")
            }
            let copy = InferenceWeights(tensorParallel: split)
            try copy.copyParameters(from: local.parameters.pointer, layout: local.layout)
            #expect(Array(UnsafeBufferPointer(start: copy.parameters.pointer, count: copy.layout.count))
                    == Array(UnsafeBufferPointer(start: local.parameters.pointer, count: local.layout.count)))
        }
    }
}
