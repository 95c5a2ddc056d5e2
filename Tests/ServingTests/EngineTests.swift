import DataPipeline
import Model
import Serving
import Tensors
import Testing

@Suite struct EngineTests {
    init() { useSingleThreadedBLAS() }

    let config = servingConfig()

    func prompts(_ count: Int, seed: UInt64 = 20) -> [[Int32]] {
        (0..<count).map { randomTokens(3 + Int($0) * 5 % 17, vocabulary: config.vocabSize, seed: seed + UInt64($0)) }
    }

    func run(_ engine: Engine, _ prompts: [[Int32]], maxTokens: Int) throws -> [[Int32]] {
        let ids = try prompts.map { try engine.add(prompt: $0, parameters: .greedy(maxTokens: maxTokens)) }
        let results = engine.runToCompletion()
        return ids.map { results[$0] ?? [] }
    }

    /// Many sequences together (continuous batching, chunked prefill) give each the tokens it
    /// gets alone, and those equal the training model's greedy continuation.
    @Test func batchedGreedyEqualsAloneAndReference() throws {
        let weights = servingWeights(config)
        let prompts = prompts(6)
        let together = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 4, tokenBudget: 7),
                              tokenizer: nil)
        let batched = try run(together, prompts, maxTokens: 9)
        for (index, prompt) in prompts.enumerated() {
            let alone = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 1, tokenBudget: 64),
                               tokenizer: nil)
            let single = try run(alone, [prompt], maxTokens: 9)[0]
            #expect(batched[index] == single, "prompt \(index)")
            #expect(single == referenceGreedy(weights, prompt: prompt, count: 9), "prompt \(index) vs the training model")
        }
        #expect(together.statistics.freeBlocks == 64)
    }

    /// So few blocks that sequences must be preempted and recomputed: all still finish with
    /// the same tokens, and every block comes back.
    @Test func preemptionUnderTinyBlockBudget() throws {
        let weights = servingWeights(config)
        let prompts = prompts(5, seed: 40)
        let roomy = try run(Engine(weights: weights, configuration: EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 5, tokenBudget: 64),
                                   tokenizer: nil), prompts, maxTokens: 12)
        let tight = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 9, blockSize: 4, maximumBatch: 5, tokenBudget: 64),
                           tokenizer: nil)
        let outputs = try run(tight, prompts, maxTokens: 12)
        #expect(outputs == roomy)
        #expect(outputs.allSatisfy { $0.count == 12 })
        #expect(tight.statistics.preemptions > 0)
        #expect(tight.statistics.freeBlocks == 9)
    }

    /// Requests with a common prefix share its full blocks: same outputs, fewer blocks held.
    @Test func prefixSharingKeepsOutputsAndSavesBlocks() throws {
        let weights = servingWeights(config)
        let prefix = randomTokens(16, vocabulary: config.vocabSize, seed: 77)
        let prompts = (0..<3).map { prefix + randomTokens(2, vocabulary: config.vocabSize, seed: 80 + UInt64($0)) }
        let configuration = EngineConfiguration(blockCount: 64, blockSize: 4, maximumBatch: 4, tokenBudget: 64)
        let plain = Engine(weights: weights, configuration: { var c = configuration; c.prefixSharing = false; return c }(), tokenizer: nil)
        let expected = try run(plain, prompts, maxTokens: 5)
        let shared = Engine(weights: weights, configuration: configuration, tokenizer: nil)
        // The first request fills the cache; the next two find its four prefix blocks.
        let first = try run(shared, [prompts[0]], maxTokens: 5)
        let ids = try prompts[1...].map { try shared.add(prompt: $0, parameters: .greedy(maxTokens: 5)) }
        var rest: [Int: [Int32]] = [:]
        for output in shared.step() { if let token = output.token { rest[output.requestID, default: []].append(token.token) } }
        let usedWhileRunning = 64 - shared.statistics.freeBlocks
        for (id, tokens) in shared.runToCompletion() { rest[id, default: []] += tokens }
        #expect(first + ids.map { rest[$0] ?? [] } == expected)
        #expect(shared.statistics.sharedBlocks == 8)
        // Each of the two running sequences holds 5 blocks (4 shared + 1 own); 2 own + 4 shared.
        #expect(usedWhileRunning == 6)
        #expect(shared.statistics.promptTokensComputed == 18 + 2 + 2)
    }

    @Test func cancellationFreesBlocks() throws {
        let engine = Engine(weights: servingWeights(config), configuration: EngineConfiguration(blockCount: 32, blockSize: 4),
                            tokenizer: nil)
        let id = try engine.add(prompt: randomTokens(10, vocabulary: config.vocabSize, seed: 1), parameters: .greedy(maxTokens: 50))
        _ = engine.step()
        _ = engine.step()
        #expect(engine.statistics.freeBlocks < 32)
        engine.cancel(id)
        let outputs = engine.step()
        #expect(outputs.map(\.finishReason) == [.cancelled])
        #expect(engine.statistics.freeBlocks == 32)
        #expect(!engine.hasWork)
    }

    @Test func stopTokensStopStringsAndMaxTokens() throws {
        let weights = servingWeights(config)
        let prompt = randomTokens(5, vocabulary: config.vocabSize, seed: 5)
        let reference = referenceGreedy(weights, prompt: prompt, count: 8)
        let engine = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 32, blockSize: 4), tokenizer: nil)
        var parameters = SamplingParameters.greedy(maxTokens: 8)
        parameters.stopTokens = [reference[3]]
        let id = try engine.add(prompt: prompt, parameters: parameters)
        var reasons: [FinishReason] = []
        var tokens: [Int32] = []
        while engine.hasWork {
            for output in engine.step() where output.requestID == id {
                if let token = output.token { tokens.append(token.token) }
                if let reason = output.finishReason { reasons.append(reason) }
            }
        }
        let firstStop = reference.firstIndex(of: reference[3]) ?? 3
        #expect(tokens == Array(reference[...firstStop]))
        #expect(reasons == [.stop])

        // Stop strings with the byte tokenizer: text is cut before the stop string.
        let bytes = ByteTokenizer()
        let byteConfig = servingConfig(vocabulary: bytes.vocabSize)
        let byteEngine = Engine(weights: servingWeights(byteConfig, seed: 8), configuration: EngineConfiguration(blockCount: 64, blockSize: 4),
                                tokenizer: bytes)
        let bytePrompt = bytes.encode("hello")
        let plainID = try byteEngine.add(prompt: bytePrompt, parameters: .greedy(maxTokens: 12))
        var plainText = ""
        while byteEngine.hasWork { for output in byteEngine.step() where output.requestID == plainID { plainText += output.text } }
        let scalars = Array(plainText.unicodeScalars)
        // Random weights and bytes decode to at least 6 scalars from 12 tokens with this seed; if
        // they ever do not, the stop-string half of the test must fail, not pass unrun.
        try #require(scalars.count >= 6, "greedy text \(plainText.debugDescription) is too short to pick a stop string from")
        let stop = String(String.UnicodeScalarView(scalars[3..<5]))
        var stopping = SamplingParameters.greedy(maxTokens: 12)
        stopping.stopStrings = [stop]
        let stopID = try byteEngine.add(prompt: bytePrompt, parameters: stopping)
        var stoppedText = ""
        var stopReason: FinishReason?
        while byteEngine.hasWork {
            for output in byteEngine.step() where output.requestID == stopID {
                stoppedText += output.text
                if let reason = output.finishReason { stopReason = reason }
            }
        }
        let expectedText = plainText.range(of: stop).map { String(plainText[..<$0.lowerBound]) } ?? plainText
        #expect(stoppedText == expectedText)
        #expect(stopReason == .stop)
    }

    @Test func badRequestsAreRejectedWithClearErrors() {
        let engine = Engine(weights: servingWeights(config), configuration: EngineConfiguration(blockCount: 8, blockSize: 4, maximumQueue: 1),
                            tokenizer: nil)
        #expect(throws: ServingError(.invalidRequest, "max_tokens must be at least 0, got -1", parameter: "max_tokens")) {
            try engine.add(prompt: [1, 2], parameters: .greedy(maxTokens: -1))
        }
        #expect(throws: ServingError(.promptTooLong, "this model's maximum context length is 128 tokens; the prompt has 120 tokens and max_tokens is 10 (130 in all): shorten the prompt or lower max_tokens", parameter: "max_tokens")) {
            try engine.add(prompt: Array(repeating: 1, count: 120), parameters: .greedy(maxTokens: 10))
        }
        #expect(throws: ServingError(.promptTooLong, "the prompt (30 tokens) and max_tokens (10) need 10 KV blocks of 4 tokens; the cache has 8 (raise --kv-blocks)", parameter: "max_tokens")) {
            try engine.add(prompt: Array(repeating: 1, count: 30), parameters: .greedy(maxTokens: 10))
        }
        #expect(throws: ServingError(.invalidRequest, "prompt token id 300 is outside the model's vocabulary of 300", parameter: "prompt")) {
            try engine.add(prompt: [300], parameters: .greedy(maxTokens: 1))
        }
        #expect(throws: Never.self) { try engine.add(prompt: [1], parameters: .greedy(maxTokens: 1)) }
        #expect(throws: ServingError(.overloaded, "the server is busy: 1 requests are already waiting (--max-queue 1); retry later")) {
            try engine.add(prompt: [1], parameters: .greedy(maxTokens: 1))
        }
    }
}
