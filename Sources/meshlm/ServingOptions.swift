import ArgumentParser
import Foundation
import Model
import DataPipeline
import Runtime
import Training
import Serving

/// The model and engine options `generate`, `serve` and `bench decode` share.
struct EngineOptions: ParsableArguments {
    @Option(help: "A checkpoint: a step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory (its latest checkpoint). The model's shape comes from the step's model_config.json.")
    var checkpoint: String

    @Option(help: "Tokenizer: a tokenizer.json path or a name (\(TokenizerLoader.names.joined(separator: ", "))). Default: the checkpoint's own tokenizer.json, else bytes.")
    var tokenizer: String?

    @Option(help: "A .jinja chat template to render chat messages with, instead of the checkpoint's own (chat_template.jinja or tokenizer_config.json's chat_template).")
    var chatTemplate: String?

    @Option(parsing: .unconditional, help: "KV cache blocks (each holds --block-size tokens of every layer).") var kvBlocks = 2048
    @Option(parsing: .unconditional, help: "Tokens per KV cache block.") var blockSize = 16
    @Option(parsing: .unconditional, help: "Sequences decoded together at most.") var maxBatch = 32
    @Option(parsing: .unconditional, help: "Tokens computed per engine step (decode tokens plus prefill chunks).") var tokenBudget = 512
    @Option(parsing: .unconditional, help: "Requests allowed to wait; beyond it requests get 429.") var maxQueue = 256
    @Flag(inversion: .prefixedNo, help: "Share identical full prompt blocks between requests.") var prefixSharing = true

    func validate() throws {
        for (name, value) in [("--kv-blocks", kvBlocks), ("--block-size", blockSize), ("--max-batch", maxBatch),
                              ("--token-budget", tokenBudget), ("--max-queue", maxQueue)] where value < 1 {
            throw ValidationError("\(name) must be at least 1, got \(value)")
        }
        // Block ids and slots travel as Int32 (block tables, the tensor-parallel broadcast).
        let (slots, overflow) = kvBlocks.multipliedReportingOverflow(by: blockSize)
        guard !overflow, slots <= Int(Int32.max) else {
            throw ValidationError("--kv-blocks \(kvBlocks) × --block-size \(blockSize) token slots is more than the cache can address (\(Int32.max)); lower them")
        }
    }

    /// Refuses, before the weights load, engine buffers larger than this machine's memory (their
    /// allocation would fail, or the kernel would kill the process once they are touched): the KV
    /// cache, and the activation and logits rows of one step (max(--token-budget, --max-batch)
    /// rows). Whole-model figures: tensor-parallel ranks split them among themselves.
    func checkBuffersFitMemory(_ config: LlamaConfig) throws {
        let slots = Double(kvBlocks) * Double(blockSize)
        let cacheBytes = 2 * Double(config.numHiddenLayers) * slots * Double(config.numKeyValueHeads * config.headDim) * 4
        let rows = Swift.max(tokenBudget, maxBatch)
        let (queryWidth, keyWidth) = (config.numAttentionHeads * config.headDim, config.numKeyValueHeads * config.headDim)
        // InferenceModel's scratch per row: residual, normalized, projection, qkv, attention,
        // gate and up, activation, logits.
        let rowFloats = 3 * config.hiddenSize + 2 * queryWidth + 2 * keyWidth + 3 * config.intermediateSize + config.vocabSize
        let rowBytes = Double(rows) * Double(rowFloats) * 4
        let memory = Double(ProcessInfo.processInfo.physicalMemory)
        guard cacheBytes + rowBytes <= memory else {
            let remedy = cacheBytes >= rowBytes ? "lower --kv-blocks" : "lower --token-budget and --max-batch"
            func gigabytes(_ bytes: Double) -> String { String(format: "%.1f GB", bytes / 1e9) }
            throw ServingError(.checkpoint, "the engine's buffers need \(gigabytes(cacheBytes + rowBytes)), more than this machine's \(gigabytes(memory)) of memory: the KV cache of --kv-blocks \(kvBlocks) × --block-size \(blockSize) is \(gigabytes(cacheBytes)) (2 × \(config.numHiddenLayers) layers × \(kvBlocks * blockSize) slots × \(config.numKeyValueHeads) KV heads × \(config.headDim) head dim × 4 bytes) and \(rows) rows of activations and logits (the larger of --token-budget \(tokenBudget) and --max-batch \(maxBatch)) are \(gigabytes(rowBytes)): \(remedy)")
        }
    }

    var configuration: EngineConfiguration {
        EngineConfiguration(blockCount: kvBlocks, blockSize: blockSize, maximumBatch: maxBatch, tokenBudget: tokenBudget,
                            maximumQueue: maxQueue, prefixSharing: prefixSharing)
    }

    /// Loads the checkpoint and the tokenizer and checks that they fit each other. With more
    /// than one rank in `world`, each rank reads only its tensor-parallel slices and gets the
    /// group that joins them (rank 0 drives the engine, the others follow).
    func load(world: Communicator) throws -> (InferenceWeights, any Tokenizer, InferenceTensorGroup?) {
        // Collectively: a bad checkpoint seen by one rank or all ends the job with one message.
        try world.collectively {
            let (weights, tokenizer) = try load(tensorParallel: world.size > 1 ? (world.size, world.rank) : nil)
            return (weights, tokenizer, weights.tensorParallel.map { InferenceTensorGroup(communicator: world, layout: $0) })
        }
    }

    /// Loads the checkpoint and the tokenizer and checks that they fit each other.
    func load(tensorParallel: (degree: Int, rank: Int)? = nil) throws -> (InferenceWeights, any Tokenizer) {
        try checkBuffersFitMemory(InferenceWeights.config(checkpoint: checkpoint))
        let weights = try InferenceWeights.load(checkpoint: checkpoint, tensorParallel: tensorParallel)
        // The tokenizer the run trained with travels in its checkpoint (docs/checkpoints.md); a
        // --tokenizer given must be the one it records.
        let tokenizer = try CheckpointTokenizer.load(for: try InferenceWeights.resolveStepDirectory(checkpoint), given: self.tokenizer)
        guard tokenizer.vocabSize <= weights.config.vocabSize else {
            throw ServingError(.checkpoint, "tokenizer '\(tokenizer.identity.name)' has \(tokenizer.vocabSize) ids but the model's vocab_size is \(weights.config.vocabSize): give the tokenizer the model was trained with (--tokenizer)")
        }
        return (weights, tokenizer)
    }

    /// How chat messages become prompts: the checkpoint's chat template, `--chat-template`, or
    /// the plain layout for a model without one.
    func chatPrompter(tokenizer: any Tokenizer) throws -> ChatPrompter {
        try ChatPrompter.load(stepDirectory: try InferenceWeights.resolveStepDirectory(checkpoint), override: chatTemplate,
                              tokenizer: tokenizer)
    }
}

/// Sampling flags of `generate` (the HTTP API takes the same as request fields).
struct SamplingOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Tokens to generate at most.") var maxTokens = 64
    @Option(parsing: .unconditional, help: "0 = greedy.") var temperature: Float = 0
    @Option(parsing: .unconditional, help: "Keep the k most likely tokens (0 = all).") var topK = 0
    @Option(parsing: .unconditional, help: "Nucleus: keep the most likely tokens up to this probability mass (1 = all).") var topP: Float = 1
    @Option(parsing: .unconditional, help: "Drop tokens below this fraction of the top token's probability.") var minP: Float = 0
    @Option(parsing: .unconditional, help: "transformers' repetition penalty (1 = off).") var repetitionPenalty: Float = 1
    @Option(parsing: .unconditional, help: "OpenAI presence penalty.") var presencePenalty: Float = 0
    @Option(parsing: .unconditional, help: "OpenAI frequency penalty.") var frequencyPenalty: Float = 0
    @Option(help: "Stop when the output contains this text (repeatable).") var stop: [String] = []
    @Option(help: "Stop at this token id (repeatable).") var stopToken: [Int32] = []
    @Flag(help: "Keep generating past the end-of-sequence token.") var ignoreEOS = false
    @Option(parsing: .unconditional, help: "Random seed (same seed, same text).") var seed: UInt64?

    /// The HTTP API's range checks (`SamplingParameters.validate`), with the option in place of
    /// the request field: "--max-tokens must be at least 0, got -1".
    func validate() throws {
        do { try parameters.validate() } catch {
            guard let field = error.parameter, error.description.hasPrefix(field + " ") else { throw ValidationError(error.description) }
            throw ValidationError("--" + field.replacingOccurrences(of: "_", with: "-") + error.description.dropFirst(field.count))
        }
    }

    var parameters: SamplingParameters {
        SamplingParameters(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, minP: minP,
                           repetitionPenalty: repetitionPenalty, presencePenalty: presencePenalty,
                           frequencyPenalty: frequencyPenalty, stopStrings: stop, stopTokens: stopToken,
                           ignoreEOS: ignoreEOS, seed: seed)
    }
}
