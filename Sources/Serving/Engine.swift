import DataPipeline
import Model
import Tensors

/// The engine's sizes: how many KV blocks, how many sequences and tokens per step.
public struct EngineConfiguration: Sendable, Equatable {
    /// KV cache blocks (each holds `blockSize` tokens of every layer).
    public var blockCount: Int
    /// Token slots per block.
    public var blockSize: Int
    /// Sequences running at once (decode batch size).
    public var maximumBatch: Int
    /// Tokens computed per step (decode tokens plus prefill chunks): long prompts are prefilled
    /// in chunks of what is left, so running sequences keep decoding meanwhile.
    public var tokenBudget: Int
    /// Requests allowed to wait; beyond it `add` throws `overloaded`.
    public var maximumQueue: Int
    /// Whether identical full prompt blocks are shared between sequences.
    public var prefixSharing: Bool

    public init(blockCount: Int = 1024, blockSize: Int = 16, maximumBatch: Int = 32, tokenBudget: Int = 256,
                maximumQueue: Int = 256, prefixSharing: Bool = true) {
        self.blockCount = blockCount
        self.blockSize = blockSize
        self.maximumBatch = maximumBatch
        self.tokenBudget = tokenBudget
        self.maximumQueue = maximumQueue
        self.prefixSharing = prefixSharing
    }
}

/// Counters for `/metrics` and tests.
public struct EngineStatistics: Sendable, Equatable {
    public var waiting = 0
    public var running = 0
    public var freeBlocks = 0
    public var totalBlocks = 0
    public var generatedTokens = 0
    public var promptTokensComputed = 0
    public var preemptions = 0
    /// Prompt blocks taken from the cache instead of computed.
    public var sharedBlocks = 0
    /// Samples of n > 1 requests started from their leader's prefilled prompt (not prefilled).
    public var forkedSamples = 0
    /// Requests cancelled before they finished (their client left).
    public var cancelledRequests = 0
    /// Per served adapter (`Engine.adapters` order): requests added for it since start.
    public var adapterRequests: [Int] = []
    /// Per served adapter: its sequences in the running batch.
    public var adapterRunning: [Int] = []
    public var steps = 0
}

/// Continuous batching over a paged KV cache (vLLM's scheduler, simplified): every `step`
/// admits waiting sequences while blocks and the token budget allow, computes one token for each
/// decoding sequence and a chunk of each prefilling one in a single forward, samples, and retires
/// finished sequences. When a running sequence needs a block and none is free, the newest running
/// sequence is preempted: its blocks are freed and it goes back to the front of the queue to be
/// recomputed (its tokens so far, prompt and output, become its prompt; its sampler state stays,
/// so the output is the same as without preemption).
///
/// A request for n samples (`SamplingParameters.sampleCount`) is one sequence until its prompt
/// is prefilled; then the other n − 1 are forked from it, sharing the prompt's full blocks (see
/// `forkSamples`). Each sample reports its own outputs (`SequenceOutput.sampleIndex`).
///
/// A request may name a served LoRA adapter (`ServedAdapter`, kept unmerged): its rows in each
/// forward get the adapter's term (`ForwardBatch.adapterRuns`), the other rows see the base, so
/// sequences of several adapters and of the base share every step. Its prompt blocks are cached
/// under hashes seeded by the adapter (`prefixSeed`): the same tokens have other keys and values
/// under another adapter.
///
/// The step is one function of the engine's state, so ranks could run it in lockstep. Not
/// thread-safe: one thread calls `add`, `cancel`, `step` and `replaceWeights` (see `EngineLoop`
/// for a server).
public final class Engine {
    public let configuration: EngineConfiguration
    public let model: InferenceModel
    public let cache: KVBlockPool
    public let tokenizer: (any Tokenizer)?
    /// The LoRA adapters requests may name, by index (`add(prompt:parameters:adapter:)`).
    public var adapters: [ServedAdapter] { model.adapters }
    public var modelConfig: LlamaConfig { model.config }
    let endOfSequence: Int32?

    private var waiting: [GenerationSequence] = []
    private var running: [GenerationSequence] = []
    private var pendingOutputs: [SequenceOutput] = []
    private var nextID = 0
    private var seedGenerator: SplitMix64
    public private(set) var statistics = EngineStatistics()

    /// Called with each sampled row's request id and its logits before sampling (debugging and
    /// the tensor-parallel tests' logits dump). Forked samples draw their first token from their
    /// leader's row, which is reported once.
    public var logitsObserver: ((_ requestID: Int, _ logits: UnsafeMutableBufferPointer<Float>) -> Void)?

    /// - Parameters:
    ///   - tensorGroup: the ranks sharing a tensor-parallel model (`weights` holds this rank's
    ///     slices). Rank 0 steps the engine; the others call `model.follow(cache: cache)`.
    ///   - adapters: LoRA adapters over `weights`, served unmerged (one rank only).
    public init(weights: InferenceWeights, configuration: EngineConfiguration, tokenizer: (any Tokenizer)?,
                threads: KernelThreads = .single, seed: UInt64 = 0, tensorGroup: InferenceTensorGroup? = nil,
                adapters: [ServedAdapter] = []) {
        let config = weights.config
        precondition(configuration.tokenBudget >= 1 && configuration.maximumBatch >= 1,
                     "token budget and batch size must be at least 1")
        self.configuration = configuration
        self.model = InferenceModel(weights: weights, maximumRows: Swift.max(configuration.tokenBudget, configuration.maximumBatch),
                                    threads: threads, tensorGroup: tensorGroup, adapters: adapters)
        // Only this rank's KV heads under tensor parallelism; the block ids are rank 0's.
        self.cache = KVBlockPool(blockCount: configuration.blockCount, blockSize: configuration.blockSize,
                                 layerCount: config.numHiddenLayers,
                                 slotWidth: weights.localConfig.numKeyValueHeads * config.headDim)
        self.tokenizer = tokenizer
        self.endOfSequence = tokenizer.map(\.eosId) ?? config.eosTokenId.map(Int32.init)
        self.seedGenerator = SplitMix64(seed: seed)
        statistics.totalBlocks = configuration.blockCount
        statistics.freeBlocks = configuration.blockCount
        statistics.adapterRequests = Array(repeating: 0, count: adapters.count)
        statistics.adapterRunning = Array(repeating: 0, count: adapters.count)
    }

    /// Whether any sequence waits, runs or has output not yet returned by `step`.
    public var hasWork: Bool { !waiting.isEmpty || !running.isEmpty || !pendingOutputs.isEmpty }

    /// Whether no sequence waits or runs (outputs may still wait to be returned by `step`).
    var isIdle: Bool { waiting.isEmpty && running.isEmpty }

    /// Sequences waiting and running, for messages.
    var sequenceCounts: (waiting: Int, running: Int) { (waiting.count, running.count) }

    /// Queues a request and returns its id (every output of its `parameters.sampleCount`
    /// samples carries it). Throws when the request can never fit (prompt plus max_tokens beyond
    /// the context or the whole cache), is invalid, or the queue is full.
    ///
    /// - Parameter adapter: the index in `adapters` of the LoRA adapter to generate with; nil
    ///   for the base model.
    @discardableResult
    public func add(prompt: [Int32], parameters: SamplingParameters, adapter: Int? = nil) throws(ServingError) -> Int {
        precondition(adapter.map { adapters.indices.contains($0) } ?? true, "no served adapter \(adapter ?? -1)")
        try parameters.validate()
        guard !prompt.isEmpty else { throw ServingError(.invalidRequest, "the prompt is empty", parameter: "prompt") }
        let vocabulary = modelConfig.vocabSize
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
            throw ServingError(.invalidRequest, "prompt token id \(bad) is outside the model's vocabulary of \(vocabulary)", parameter: "prompt")
        }
        let context = modelConfig.maxPositionEmbeddings
        let total = prompt.count + parameters.maxTokens
        guard total <= context else {
            throw ServingError(.promptTooLong, "this model's maximum context length is \(context) tokens; the prompt has \(prompt.count) tokens and max_tokens is \(parameters.maxTokens) (\(total) in all): shorten the prompt or lower max_tokens", parameter: "max_tokens")
        }
        let blocksNeeded = (total + configuration.blockSize - 1) / configuration.blockSize
        guard blocksNeeded <= configuration.blockCount else {
            throw ServingError(.promptTooLong, "the prompt (\(prompt.count) tokens) and max_tokens (\(parameters.maxTokens)) need \(blocksNeeded) KV blocks of \(configuration.blockSize) tokens; the cache has \(configuration.blockCount) (raise --kv-blocks)", parameter: "max_tokens")
        }
        guard waiting.count < configuration.maximumQueue else {
            throw ServingError(.overloaded, "the server is busy: \(waiting.count) requests are already waiting (--max-queue \(configuration.maximumQueue)); retry later")
        }
        let id = nextID
        nextID += 1
        let sequence = GenerationSequence(requestID: id, prompt: prompt, parameters: parameters,
                                          requestSeed: parameters.seed ?? seedGenerator.next(), adapter: adapter)
        if let adapter { statistics.adapterRequests[adapter] += 1 }
        if parameters.maxTokens == 0 {
            for index in 0..<parameters.sampleCount {
                pendingOutputs.append(SequenceOutput(requestID: id, sampleIndex: index, token: nil, text: "", finishReason: .length,
                                                     promptTokenCount: prompt.count, outputTokenCount: 0))
            }
        } else {
            waiting.append(sequence)
        }
        updateStatistics()
        return id
    }

    /// Ends every unfinished sample of a request now and frees their blocks; the next `step`
    /// reports each of them `cancelled` (samples not yet forked too).
    public func cancel(_ requestID: Int) {
        var cancelled: [GenerationSequence] = []
        for sequence in waiting + running where sequence.requestID == requestID { cancelled.append(sequence) }
        waiting.removeAll { $0.requestID == requestID }
        running.removeAll { $0.requestID == requestID }
        if !cancelled.isEmpty { statistics.cancelledRequests += 1 }
        for sequence in cancelled {
            freeBlocks(of: sequence)
            pendingOutputs.append(output(sequence, token: nil, text: "", reason: .cancelled))
            for index in stride(from: 1, through: sequence.unforkedSampleCount, by: 1) {
                pendingOutputs.append(SequenceOutput(requestID: requestID, sampleIndex: index, token: nil, text: "",
                                                     finishReason: .cancelled, promptTokenCount: sequence.promptCount,
                                                     outputTokenCount: 0))
            }
            sequence.unforkedSampleCount = 0
        }
        updateStatistics()
    }

    /// One iteration: schedule, one forward over every scheduled token, sample, retire.
    public func step() -> [SequenceOutput] {
        var outputs = pendingOutputs
        pendingOutputs = []
        let scheduled = schedule()
        guard !scheduled.isEmpty else {
            updateStatistics()
            return outputs
        }
        var batch = ForwardBatch()
        var sampling: [GenerationSequence] = []
        for (sequence, count) in groupedByAdapter(scheduled) {
            let sequenceIndex = batch.blockTables.count
            if let adapter = sequence.adapter {
                if let last = batch.adapterRuns.last, last.adapter == adapter, last.rows.upperBound == batch.rowCount {
                    batch.adapterRuns[batch.adapterRuns.count - 1].rows = last.rows.lowerBound..<batch.rowCount + count
                } else {
                    batch.adapterRuns.append(AdapterRun(adapter: adapter, rows: batch.rowCount..<batch.rowCount + count))
                }
            }
            batch.blockTables.append(sequence.blockTable)
            for position in sequence.computedCount..<sequence.computedCount + count {
                batch.tokens.append(sequence.tokens[position])
                batch.positions.append(Int32(position))
                batch.sequenceIndices.append(sequenceIndex)
            }
            if sequence.computedCount + count == sequence.tokens.count {
                batch.logitRows.append(batch.rowCount - 1)
                sampling.append(sequence)
            }
        }
        let logits = model.forward(batch, cache: cache)
        statistics.steps += 1
        for (sequence, count) in scheduled {
            statistics.promptTokensComputed += Swift.max(0, Swift.min(count, sequence.promptCount - sequence.computedCount))
            sequence.computedCount += count
            registerFullBlocks(of: sequence)
        }
        let vocabulary = modelConfig.vocabSize
        for (index, sequence) in sampling.enumerated() {
            let row = UnsafeMutableBufferPointer(rebasing: logits[index * vocabulary..<(index + 1) * vocabulary])
            logitsObserver?(sequence.requestID, row)
            // Before the leader's own draw: its penalties change the row in place.
            if sequence.unforkedSampleCount > 0 { outputs += forkSamples(of: sequence, logits: UnsafeBufferPointer(row)) }
            let sampled = Sampler.sample(logits: row, parameters: sequence.parameters, seen: sequence.seen,
                                         outputCounts: sequence.outputCounts, generator: &sequence.generator)
            let text = sequence.append(sampled, tokenizer: tokenizer, endOfSequence: endOfSequence)
            statistics.generatedTokens += 1
            outputs.append(output(sequence, token: sampled, text: text, reason: sequence.finishReason))
        }
        for sequence in running where sequence.finishReason != nil { freeBlocks(of: sequence) }
        running.removeAll { $0.finishReason != nil }
        updateStatistics()
        return outputs
    }

    /// Runs steps until every queued request is done; returns each request's output tokens
    /// (sample 0's; `runSamplesToCompletion` gives every sample with its log-probabilities).
    public func runToCompletion() -> [Int: [Int32]] {
        runSamplesToCompletion().mapValues { $0.first?.tokens ?? [] }
    }

    // MARK: Samples of one prompt

    /// Starts the other samples of `leader`'s request once its prompt is prefilled (this step's
    /// `logits` row is the prompt's last): each draws its first token from that row with its own
    /// random stream, exactly as a separate request with its seed would from its own prefill.
    ///
    /// Each sample then holds the prompt's full blocks with the leader (reference counted) and
    /// recomputes, in its first decode step, the prompt tokens of the partly filled last block
    /// into a block of its own (at most block size − 1 tokens). Recomputing rather than copying
    /// that block keeps the KV pool changed only by forwards, so the followers of a
    /// tensor-parallel group, which see nothing but batches, hold the same blocks. Samples beyond
    /// the batch limit wait at the front of the queue and are computed like preempted sequences.
    private func forkSamples(of leader: GenerationSequence, logits: UnsafeBufferPointer<Float>) -> [SequenceOutput] {
        let count = leader.unforkedSampleCount
        leader.unforkedSampleCount = 0
        let fullBlocks = leader.promptCount / cache.blockSize
        var outputs: [SequenceOutput] = []
        var deferred: [GenerationSequence] = []
        var row = [Float](repeating: 0, count: logits.count)
        for index in 1...count {
            let sample = leader.sibling(sampleIndex: index)
            let sampled = row.withUnsafeMutableBufferPointer { buffer in
                _ = buffer.update(fromContentsOf: logits)
                return Sampler.sample(logits: buffer, parameters: sample.parameters, seen: sample.seen,
                                      outputCounts: sample.outputCounts, generator: &sample.generator)
            }
            let text = sample.append(sampled, tokenizer: tokenizer, endOfSequence: endOfSequence)
            statistics.generatedTokens += 1
            statistics.forkedSamples += 1
            outputs.append(output(sample, token: sampled, text: text, reason: sample.finishReason))
            guard sample.finishReason == nil else { continue }
            guard running.count < configuration.maximumBatch else {
                deferred.append(sample)
                continue
            }
            for block in leader.blockTable[..<fullBlocks] {
                cache.retain(block)
                sample.blockTable.append(block)
            }
            sample.blockHashes = Array(leader.blockHashes.prefix(fullBlocks))
            sample.computedCount = fullBlocks * cache.blockSize
            running.append(sample)
        }
        waiting.insert(contentsOf: deferred, at: 0)
        return outputs
    }

    /// The scheduled sequences with each adapter's together (base first, then by adapter,
    /// otherwise in schedule order), so each adapter's rows form one run of the batch. A
    /// sequence's logits do not depend on where its rows sit in the batch.
    private func groupedByAdapter(_ scheduled: [(GenerationSequence, Int)]) -> [(GenerationSequence, Int)] {
        guard scheduled.contains(where: { $0.0.adapter != nil }) else { return scheduled }
        var groups = [[(GenerationSequence, Int)]](repeating: [], count: adapters.count + 1)
        for entry in scheduled { groups[entry.0.adapter.map { $0 + 1 } ?? 0].append(entry) }
        return groups.flatMap { $0 }
    }

    // MARK: Scheduling

    /// Picks (sequence, token count) pairs for this step and gives each the blocks it needs.
    private func schedule() -> [(GenerationSequence, Int)] {
        var budget = configuration.tokenBudget
        var scheduled: [(GenerationSequence, Int)] = []
        var index = 0
        while index < running.count && budget > 0 {
            let sequence = running[index]
            let count = Swift.min(sequence.tokens.count - sequence.computedCount, budget)
            if reserveBlocks(sequence, upTo: sequence.computedCount + count, preemptingAfter: index) {
                scheduled.append((sequence, count))
                budget -= count
                index += 1
            } else {
                // Not even preempting every newer sequence freed enough: preempt this one too.
                preempt(sequence)
                running.remove(at: index)
            }
        }
        while let sequence = waiting.first, running.count < configuration.maximumBatch, budget > 0 {
            if configuration.prefixSharing { sharePrefix(of: sequence) }
            let count = Swift.min(sequence.tokens.count - sequence.computedCount, budget)
            guard reserveBlocks(sequence, upTo: sequence.computedCount + count, preemptingAfter: nil) else {
                freeBlocks(of: sequence)
                break
            }
            waiting.removeFirst()
            running.append(sequence)
            scheduled.append((sequence, count))
            budget -= count
        }
        return scheduled
    }

    /// Gives `sequence` blocks for positions below `end`. With `preemptingAfter`, newer running
    /// sequences (after that index) are preempted, newest first, until enough blocks are free.
    private func reserveBlocks(_ sequence: GenerationSequence, upTo end: Int, preemptingAfter index: Int?) -> Bool {
        let needed = (end + cache.blockSize - 1) / cache.blockSize - sequence.blockTable.count
        guard needed > 0 else { return true }
        while cache.freeBlockCount < needed {
            guard let index, running.count > index + 1, let victim = running.popLast() else { return false }
            preempt(victim)
        }
        for _ in 0..<needed {
            guard let block = cache.allocate() else { preconditionFailure("free block count was checked") }
            sequence.blockTable.append(block)
        }
        return true
    }

    private func preempt(_ sequence: GenerationSequence) {
        freeBlocks(of: sequence)
        waiting.insert(sequence, at: 0)
        statistics.preemptions += 1
    }

    /// Takes cached blocks for the sequence's leading full blocks, leaving at least one token to
    /// compute (its logits give the next token).
    private func sharePrefix(of sequence: GenerationSequence) {
        guard sequence.blockTable.isEmpty else { return }
        let size = cache.blockSize
        var previous = prefixSeed(sequence)
        var block = 0
        while (block + 1) * size <= sequence.tokens.count - 1 {
            let tokens = sequence.tokens[block * size..<(block + 1) * size]
            let hash = KVBlockPool.chainHash(previous: previous, tokens: tokens)
            guard let shared = cache.share(hash: hash, tokens: tokens) else { break }
            sequence.blockTable.append(shared)
            sequence.blockHashes.append(hash)
            previous = hash
            block += 1
            statistics.sharedBlocks += 1
        }
        sequence.computedCount = block * size
    }

    /// Registers the sequence's newly completed full blocks for prefix sharing.
    private func registerFullBlocks(of sequence: GenerationSequence) {
        guard configuration.prefixSharing else { return }
        let size = cache.blockSize
        while sequence.blockHashes.count < sequence.computedCount / size {
            let block = sequence.blockHashes.count
            let tokens = sequence.tokens[block * size..<(block + 1) * size]
            let hash = KVBlockPool.chainHash(previous: sequence.blockHashes.last ?? prefixSeed(sequence), tokens: tokens)
            cache.register(block: sequence.blockTable[block], hash: hash, tokens: tokens)
            sequence.blockHashes.append(hash)
        }
    }

    /// What a sequence's first block hash is chained from: 0 for the base model, a value of its
    /// own per adapter, so no block is shared across adapters (the chain's first step is a
    /// bijection of it, so equal tokens under two seeds never hash alike).
    private func prefixSeed(_ sequence: GenerationSequence) -> UInt64 {
        guard let adapter = sequence.adapter else { return 0 }
        return KVBlockPool.chainHash(previous: 0x6164_6170_7465_7200, tokens: [Int32(adapter)])
    }

    private func freeBlocks(of sequence: GenerationSequence) {
        for block in sequence.blockTable { cache.release(block) }
        sequence.blockTable = []
        sequence.blockHashes = []
        sequence.computedCount = 0
    }

    private func output(_ sequence: GenerationSequence, token: SampledToken?, text: String, reason: FinishReason?) -> SequenceOutput {
        SequenceOutput(requestID: sequence.requestID, sampleIndex: sequence.sampleIndex, token: token, text: text,
                       finishReason: reason, promptTokenCount: sequence.promptCount, outputTokenCount: sequence.outputCount)
    }

    private func updateStatistics() {
        statistics.waiting = waiting.count
        statistics.running = running.count
        if !adapters.isEmpty {
            for index in adapters.indices { statistics.adapterRunning[index] = 0 }
            for sequence in running { if let adapter = sequence.adapter { statistics.adapterRunning[adapter] += 1 } }
        }
        statistics.freeBlocks = cache.freeBlockCount
    }
}
