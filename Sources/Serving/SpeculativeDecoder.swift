import Model
import Tensors

/// Greedy speculative decoding (Leviathan et al.) for one sequence: a small draft model proposes
/// `lookahead` tokens one at a time, the target model scores all of them in one forward, and the
/// longest prefix the target agrees with is kept plus the target's own next token. The output
/// is exactly the target's greedy output; the gain is that the target streams its weights once
/// per accepted run instead of once per token.
///
/// Rejected proposals need no rollback: their keys and values sit at positions beyond the
/// accepted ones, and attention reads only positions up to each row's own, so the next
/// verification overwrites them before anything reads them.
public final class SpeculativeDecoder {
    public let target: InferenceModel
    public let draft: InferenceModel
    public let lookahead: Int
    private let targetCache: KVBlockPool
    private let draftCache: KVBlockPool
    private let blockTable: [Int]
    /// Draft tokens proposed and accepted since creation.
    public private(set) var proposedCount = 0
    public private(set) var acceptedCount = 0
    /// Target forwards run (prefill included).
    public private(set) var targetForwardCount = 0

    public init(target: InferenceWeights, draft: InferenceWeights, lookahead: Int, threads: KernelThreads = .single) {
        precondition(target.config.vocabSize == draft.config.vocabSize,
                     "draft vocab_size \(draft.config.vocabSize) differs from the target's \(target.config.vocabSize)")
        precondition(lookahead >= 1 && lookahead < SmallBatchLinear.maximumRows, "lookahead must be in 1..<\(SmallBatchLinear.maximumRows)")
        let context = Swift.min(target.config.maxPositionEmbeddings, draft.config.maxPositionEmbeddings)
        let blockSize = 16
        let blocks = (context + lookahead + blockSize) / blockSize
        blockTable = Array(0..<blocks)
        self.lookahead = lookahead
        self.target = InferenceModel(weights: target, maximumRows: Swift.max(context, lookahead + 1), threads: threads)
        self.draft = InferenceModel(weights: draft, maximumRows: context, threads: threads)
        targetCache = KVBlockPool(blockCount: blocks, blockSize: blockSize, layerCount: target.config.numHiddenLayers,
                                  slotWidth: target.config.numKeyValueHeads * target.config.headDim)
        draftCache = KVBlockPool(blockCount: blocks, blockSize: blockSize, layerCount: draft.config.numHiddenLayers,
                                 slotWidth: draft.config.numKeyValueHeads * draft.config.headDim)
    }

    /// The fraction of proposed draft tokens the target accepted.
    public var acceptanceRate: Double { proposedCount == 0 ? 0 : Double(acceptedCount) / Double(proposedCount) }

    /// Tokens kept per target forward (accepted proposals plus the target's own token).
    public var tokensPerTargetForward: Double { targetForwardCount == 0 ? 0 : Double(generatedCount) / Double(targetForwardCount) }
    /// Tokens decided since creation.
    public private(set) var generatedCount = 0

    /// The context both models hold.
    public var context: Int { Swift.min(target.config.maxPositionEmbeddings, draft.config.maxPositionEmbeddings) }

    /// Generates `maxTokens` greedy tokens after `prompt` (no stop rules), calling `onTokens`
    /// with each accepted run as it is decided.
    public func generate(prompt: [Int32], maxTokens: Int, onTokens: ([Int32]) -> Void = { _ in }) -> [Int32] {
        decode(prompt: prompt, maxTokens: maxTokens) { run in
            onTokens(run)
            return true
        }
    }

    /// Greedy decoding of up to `maxTokens` tokens; `onTokens` receives each decided run and
    /// returns false to stop (a stop rule fired). Returns the tokens decided, which may run
    /// past the point where `onTokens` stopped within the last run.
    @discardableResult
    public func decode(prompt: [Int32], maxTokens: Int, onTokens: ([Int32]) -> Bool) -> [Int32] {
        let context = self.context
        precondition(!prompt.isEmpty && prompt.count + maxTokens <= context,
                     "prompt \(prompt.count) + max tokens \(maxTokens) must fit the context of \(context)")
        guard maxTokens > 0 else { return [] }
        var tokens = prompt
        // Prefill both; the target's last logits give the first token.
        let first = argmaxRows(target, targetCache, tokens: tokens, start: 0, logitsFor: [tokens.count - 1])[0]
        _ = argmaxRows(draft, draftCache, tokens: tokens, start: 0, logitsFor: [])
        targetForwardCount += 1
        generatedCount += 1
        var draftComputed = tokens.count
        tokens.append(first)
        var going = onTokens([first])
        while going && tokens.count - prompt.count < maxTokens {
            let remaining = maxTokens - (tokens.count - prompt.count)
            let count = Swift.min(lookahead, remaining - 1, context - tokens.count - 1)
            guard count >= 1 else {
                // Room for one more token only: a plain target step.
                let next = argmaxRows(target, targetCache, tokens: tokens, start: tokens.count - 1, logitsFor: [0])[0]
                targetForwardCount += 1
                generatedCount += 1
                tokens.append(next)
                going = onTokens([next])
                continue
            }
            // Draft: propose `count` tokens, one forward each (catching up on accepted tokens first).
            var proposal = tokens
            for _ in 0..<count {
                let rows = proposal.count - draftComputed
                let next = argmaxRows(draft, draftCache, tokens: proposal, start: draftComputed, logitsFor: [rows - 1])[0]
                draftComputed = proposal.count
                proposal.append(next)
            }
            let proposed = Array(proposal[tokens.count...])
            // Verify: the last accepted token and the proposals in one target forward.
            let start = tokens.count - 1
            let predictions = argmaxRows(target, targetCache, tokens: proposal, start: start, logitsFor: Array(0...count))
            targetForwardCount += 1
            var accepted = 0
            while accepted < count && proposed[accepted] == predictions[accepted] { accepted += 1 }
            let run = Array(proposed[..<accepted]) + [predictions[accepted]]
            proposedCount += count
            acceptedCount += accepted
            // Draft keys are valid up to the last accepted proposal.
            draftComputed = Swift.min(draftComputed, tokens.count + accepted)
            tokens += run
            generatedCount += run.count
            going = onTokens(run)
        }
        return Array(tokens[prompt.count...].prefix(maxTokens))
    }

    /// Speculative sampling (Leviathan et al. 2023; Chen et al. 2023) for `parameters` with a
    /// temperature above 0: the draft samples each proposal x from its own distribution q (the
    /// same temperature, top-k, top-p and min-p); the target accepts x with probability
    /// min(1, p(x)/q(x)) and, at the first rejection, draws from max(0, p − q) renormalized;
    /// when every proposal is accepted it draws one more token from its next distribution.
    /// Each kept token is then distributed exactly as when the target samples alone (not the
    /// same draws for a seed, though: the stream of random numbers is consumed differently).
    @discardableResult
    public func decodeSampled(prompt: [Int32], maxTokens: Int, parameters: SamplingParameters, generator: inout SplitMix64,
                              onTokens: ([Int32]) -> Bool) -> [Int32] {
        precondition(parameters.temperature > 0, "speculative sampling needs a temperature above 0 (decode is the greedy one)")
        let context = self.context
        precondition(!prompt.isEmpty && prompt.count + maxTokens <= context,
                     "prompt \(prompt.count) + max tokens \(maxTokens) must fit the context of \(context)")
        guard maxTokens > 0 else { return [] }
        var tokens = prompt
        let prefill = logitRows(target, targetCache, tokens: tokens, start: 0, logitsFor: [tokens.count - 1])
        _ = logitRows(draft, draftCache, tokens: tokens, start: 0, logitsFor: [])
        targetForwardCount += 1
        generatedCount += 1
        let first = Self.draw(Sampler.distribution(logits: prefill[0], parameters: parameters), &generator)
        var draftComputed = tokens.count
        tokens.append(first)
        var going = onTokens([first])
        while going && tokens.count - prompt.count < maxTokens {
            let remaining = maxTokens - (tokens.count - prompt.count)
            let count = Swift.min(lookahead, remaining - 1, context - tokens.count - 1)
            guard count >= 1 else {
                let logits = logitRows(target, targetCache, tokens: tokens, start: tokens.count - 1, logitsFor: [0])
                targetForwardCount += 1
                generatedCount += 1
                let next = Self.draw(Sampler.distribution(logits: logits[0], parameters: parameters), &generator)
                tokens.append(next)
                going = onTokens([next])
                continue
            }
            var proposal = tokens
            var draftDistributions: [[Float]] = []
            for _ in 0..<count {
                let rows = proposal.count - draftComputed
                let logits = logitRows(draft, draftCache, tokens: proposal, start: draftComputed, logitsFor: [rows - 1])
                draftComputed = proposal.count
                let distribution = Sampler.distribution(logits: logits[0], parameters: parameters)
                proposal.append(Self.draw(distribution, &generator))
                draftDistributions.append(distribution)
            }
            let targetLogits = logitRows(target, targetCache, tokens: proposal, start: tokens.count - 1, logitsFor: Array(0...count))
            targetForwardCount += 1
            var accepted = 0
            var replacement: Int32?
            while accepted < count {
                let token = Int(proposal[tokens.count + accepted])
                let p = Sampler.distribution(logits: targetLogits[accepted], parameters: parameters)
                let q = draftDistributions[accepted]
                // u < p/q without dividing; q(token) > 0 since the draft drew it.
                if generator.nextUniform() * q[token] < p[token] {
                    accepted += 1
                    continue
                }
                let residual = zip(p, q).map { Swift.max(0, $0 - $1) }
                // p ≤ q everywhere means p = q up to rounding: then p itself is the residual.
                replacement = Self.draw(residual.reduce(0, +) > 0 ? residual : p, &generator)
                break
            }
            let last = replacement ?? Self.draw(Sampler.distribution(logits: targetLogits[count], parameters: parameters), &generator)
            let run = Array(proposal[tokens.count..<tokens.count + accepted]) + [last]
            proposedCount += count
            acceptedCount += accepted
            draftComputed = Swift.min(draftComputed, tokens.count + accepted)
            tokens += run
            generatedCount += run.count
            going = onTokens(run)
        }
        return Array(tokens[prompt.count...].prefix(maxTokens))
    }

    /// One draw from unnormalized non-negative `weights`.
    private static func draw(_ weights: [Float], _ generator: inout SplitMix64) -> Int32 {
        let mass = weights.reduce(0, +)
        var remaining = generator.nextUniform() * mass
        var last = 0
        for (index, weight) in weights.enumerated() where weight > 0 {
            remaining -= weight
            last = index
            if remaining < 0 { return Int32(index) }
        }
        return Int32(last)
    }

    /// The argmax of the rows in `logitsFor` after `logitRows`.
    private func argmaxRows(_ model: InferenceModel, _ cache: KVBlockPool, tokens: [Int32], start: Int, logitsFor rows: [Int]) -> [Int32] {
        logitRows(model, cache, tokens: tokens, start: start, logitsFor: rows).map { Int32(Sampler.argmax($0)) }
    }

    /// Runs `tokens[start...]` through `model` (positions from `start`) and returns the logits
    /// of the rows in `logitsFor` (relative to `start`), each valid until the model's next forward.
    private func logitRows(_ model: InferenceModel, _ cache: KVBlockPool, tokens: [Int32], start: Int,
                           logitsFor rows: [Int]) -> [UnsafeBufferPointer<Float>] {
        var batch = ForwardBatch()
        batch.blockTables = [blockTable]
        batch.tokens = Array(tokens[start...])
        batch.positions = (start..<tokens.count).map { Int32($0) }
        batch.sequenceIndices = Array(repeating: 0, count: tokens.count - start)
        batch.logitRows = rows
        let logits = model.forward(batch, cache: cache)
        let vocabulary = model.config.vocabSize
        return rows.indices.map { index in UnsafeBufferPointer(rebasing: logits[index * vocabulary..<(index + 1) * vocabulary]) }
    }
}

extension InferenceWeights {
    /// A draft made of this model's first `layers` layers with its embedding, final norm and
    /// head (layer-skip self-speculation): no second checkpoint needed.
    public func truncated(layers: Int) -> InferenceWeights {
        precondition(layers >= 1 && layers <= config.numHiddenLayers, "a draft keeps 1...\(config.numHiddenLayers) layers, not \(layers)")
        var draftConfig = config
        draftConfig.numHiddenLayers = layers
        let draft = InferenceWeights(config: draftConfig)
        for entry in draft.layout.entries {
            guard let source = layout.entry(named: entry.name) else { preconditionFailure("no \(entry.name) in the target") }
            (draft.parameters.pointer + entry.offset).update(from: parameters.pointer + source.offset, count: entry.count)
        }
        return draft
    }
}
