import Model
import Serving
import Tensors
import Testing

/// n samples per prompt (`SamplingParameters.sampleCount`): the prompt is prefilled once, its
/// full blocks are shared, and sample i is exactly what a separate n = 1 request with sample i's
/// seed gives, whatever else runs in the batch.
@Suite struct SampleGroupTests {
    init() { useSingleThreadedBLAS() }

    let config = servingConfig()
    /// Small weights: logits spread enough at temperature 0.9 that samples differ.
    let weights = servingWeights(servingConfig(), seed: 3, scale: 0.1)

    func sampling(_ count: Int, seed: UInt64, maxTokens: Int = 6) -> SamplingParameters {
        SamplingParameters(maxTokens: maxTokens, temperature: 0.9, topP: 0.95, seed: seed, sampleCount: count)
    }

    /// Every forward stays at 16 rows or fewer (`SmallBatchLinear`, bitwise the same per row
    /// whatever the batch), so the comparison with separate requests can be exact.
    func engine(blocks: Int = 64, maximumBatch: Int = 8, prefixSharing: Bool = true) -> Engine {
        Engine(weights: weights, configuration: EngineConfiguration(blockCount: blocks, blockSize: 4, maximumBatch: maximumBatch,
                                                                    tokenBudget: 16, prefixSharing: prefixSharing),
               tokenizer: nil)
    }

    /// What a separate n = 1 request with sample `index`'s seed generates, alone in its engine.
    func separate(prompt: [Int32], requestSeed: UInt64, index: Int, maxTokens: Int = 6) throws -> CompletedSample {
        let alone = engine()
        let seed = SamplingParameters.sampleSeed(requestSeed: requestSeed, index: index)
        let id = try alone.add(prompt: prompt, parameters: sampling(1, seed: seed, maxTokens: maxTokens))
        return try #require(alone.runSamplesToCompletion()[id]?.first)
    }

    /// Pool accounting: a 10-token prompt on 4-token blocks is 2 full blocks and a partial one.
    /// Four samples hold the 2 full blocks once (reference count 4) and one block each for the
    /// rest: 6 blocks where four separate requests hold 12; the prompt is computed once
    /// (10 tokens) plus the partial block's 2 tokens per forked sample.
    @Test(arguments: [true, false]) func samplesUseThePromptBlocksOnce(prefixSharing: Bool) throws {
        let prompt = randomTokens(10, vocabulary: config.vocabSize, seed: 61)
        let engine = engine(prefixSharing: prefixSharing)
        let id = try engine.add(prompt: prompt, parameters: sampling(4, seed: 1234))
        var outputs = engine.step()
        #expect(outputs.map(\.sampleIndex).sorted() == [0, 1, 2, 3])
        #expect(outputs.allSatisfy { $0.requestID == id && $0.token != nil })
        #expect(engine.statistics.forkedSamples == 3)
        let counts = (0..<engine.cache.blockCount).map { engine.cache.referenceCount(of: $0) }
        #expect(counts.filter { $0 == 4 }.count == 2, "the prompt's two full blocks are held by all four samples: \(counts)")
        outputs += engine.step()
        #expect(engine.statistics.freeBlocks == 64 - 6)
        #expect(engine.statistics.promptTokensComputed == 10 + 3 * 2)
        while engine.hasWork { outputs += engine.step() }
        #expect(engine.statistics.freeBlocks == 64)
        for index in 0..<4 {
            let tokens = outputs.filter { $0.sampleIndex == index }.compactMap { $0.token?.token }
            #expect(tokens == (try separate(prompt: prompt, requestSeed: 1234, index: index)).tokens, "sample \(index)")
        }
    }

    /// The full comparison, with other requests batched alongside and a batch limit that makes
    /// two of the five samples wait (and be computed like preempted sequences); the prompt is a
    /// whole number of blocks, so the samples share all of it.
    @Test(arguments: [(10, 8), (8, 3)]) func samplesEqualSeparateRequestsWhateverIsBatched(promptLength: Int, maximumBatch: Int) throws {
        let prompt = randomTokens(promptLength, vocabulary: config.vocabSize, seed: 62)
        let engine = engine(maximumBatch: maximumBatch)
        let other = try engine.add(prompt: randomTokens(7, vocabulary: config.vocabSize, seed: 63), parameters: sampling(2, seed: 5))
        let id = try engine.add(prompt: prompt, parameters: sampling(5, seed: 99))
        let last = try engine.add(prompt: randomTokens(3, vocabulary: config.vocabSize, seed: 64), parameters: sampling(1, seed: 6))
        let results = engine.runSamplesToCompletion()
        let samples = try #require(results[id])
        #expect(samples.map(\.sampleIndex) == [0, 1, 2, 3, 4])
        for sample in samples {
            let expected = try separate(prompt: prompt, requestSeed: 99, index: sample.sampleIndex)
            #expect(sample.tokens == expected.tokens, "sample \(sample.sampleIndex)")
            #expect(sample.samplingLogprobs == expected.samplingLogprobs, "sample \(sample.sampleIndex)")
            #expect(sample.tokens.count == 6)
        }
        #expect(Set(samples.map(\.tokens)).count > 1, "five samples at temperature 0.9 should not all agree")
        #expect(results[other]?.count == 2 && results[last]?.count == 1)
        #expect(engine.statistics.freeBlocks == 64)
    }

    /// Cancelling a request ends all its samples, those not yet forked too, and frees every block.
    @Test func cancelEndsEverySample() throws {
        let engine = engine()
        // 30 prompt tokens with a 16-token budget: the leader is still prefilling after one step.
        let early = try engine.add(prompt: randomTokens(30, vocabulary: config.vocabSize, seed: 65), parameters: sampling(3, seed: 1))
        _ = engine.step()
        engine.cancel(early)
        let cancelled = engine.step()
        #expect(cancelled.map(\.sampleIndex).sorted() == [0, 1, 2])
        #expect(cancelled.allSatisfy { $0.finishReason == .cancelled && $0.requestID == early })
        #expect(engine.statistics.freeBlocks == 64)

        let late = try engine.add(prompt: randomTokens(9, vocabulary: config.vocabSize, seed: 66), parameters: sampling(3, seed: 2, maxTokens: 20))
        _ = engine.step()
        _ = engine.step()
        engine.cancel(late)
        #expect(engine.step().filter { $0.finishReason == .cancelled }.map(\.sampleIndex).sorted() == [0, 1, 2])
        #expect(engine.statistics.freeBlocks == 64)
        #expect(!engine.hasWork)
    }

    @Test func maxTokensZeroFinishesEverySample() throws {
        let engine = engine()
        let id = try engine.add(prompt: [1, 2, 3], parameters: sampling(3, seed: 1, maxTokens: 0))
        let outputs = engine.step()
        #expect(outputs.map(\.sampleIndex) == [0, 1, 2])
        #expect(outputs.allSatisfy { $0.requestID == id && $0.finishReason == .length && $0.token == nil })
    }

    @Test func badSampleCountsAndSpeculativeDecodingAreRefused() throws {
        let engine = engine()
        for count in [0, 65] {
            #expect(throws: ServingError(.invalidRequest, "n must be in [1, 64], got \(count)", parameter: "n")) {
                try engine.add(prompt: [1, 2], parameters: sampling(count, seed: 1))
            }
        }
        let decoder = SpeculativeDecoder(target: weights, draft: weights, lookahead: 2)
        #expect(throws: ServingError(.invalidRequest, "speculative decoding generates one sample per request: n 2 was asked with a draft model; ask for n 1 (send the request n times with different seeds) or drop the draft", parameter: "n")) {
            try decoder.validate(prompt: [1, 2], parameters: sampling(2, seed: 1))
        }
    }
}
