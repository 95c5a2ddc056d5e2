import Checkpoint
import DataPipeline
import Foundation
import Model
import Runtime
import Tensors

/// `meshlm eval --checkpoint`: the model of a checkpoint run forward — over the windows of a
/// token stream (`lossSums`; data-parallel ranks each take a share of the windows), or on one
/// sequence for its logits, to compare with another implementation (tools/check-hf-roundtrip.py
/// compares them with transformers'). A LoRA checkpoint runs with its adapters unmerged, as
/// training computes them (y = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ).
public final class CheckpointEvaluation {
    public let model: LlamaConfig
    /// The checkpoint's LoRA adapters (its `adapter_config.json`), if any.
    public let lora: LoRAConfig?
    public let stepDirectory: String
    private let parameters: ArenaParameters
    private let threads: KernelThreads

    public init(_ reader: CheckpointReader, threads: KernelThreads = .single, modelConfigOverride: String? = nil) throws {
        model = try CheckpointReshard.modelConfig(of: reader, override: modelConfigOverride)
        stepDirectory = reader.stepDirectory
        self.threads = threads
        lora = try PeftAdapter.lora(of: reader)
        let layout = ParameterLayout(config: model, lora: lora)
        parameters = ArenaParameters(layout: layout)
        // A QLoRA run's quantized tensors come from its base as dequant(NF4(W)): the weights
        // its adapters ran over.
        let tensors = try CheckpointTensors(reader)
        for entry in layout.entries {
            let shape = try tensors.shape(of: entry.name)
            guard shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(entry.name) has shape \(shape); model_config.json\(lora == nil ? " gives" : " and adapter_config.json give") \(entry.shape)")
            }
            if tensors.quantizedBase == nil {
                try reader.read(name: entry.name, elements: 0..<entry.count,
                                into: UnsafeMutableBufferPointer(start: parameters.parameters.pointer + entry.offset, count: entry.count))
            } else {
                (parameters.parameters.pointer + entry.offset).update(from: try tensors.read(entry.name, base: QLoRAMergeBase.dequantized.base),
                                                                  count: entry.count)
            }
        }
    }

    /// The result of one sequence.
    public struct Result {
        /// Mean cross-entropy of predicting token i+1 from tokens 0...i.
        public var loss: Double
        public var targets: Int
        /// [T, V] row-major, T = the sequence's length.
        public var logits: [Float]
    }

    /// The summed next-token loss of each window in `range` (Double, summed in token order), its
    /// tokens read from `dataset`, `batchSize` windows per forward pass (a shorter last window is
    /// padded at its end, which causal attention keeps out of the results of its tokens).
    /// A token id outside the model's vocabulary is an error naming its place in the stream.
    public func lossSums(of range: Range<Int>, windows: EvaluationWindows, dataset: TokenDataset, batchSize: Int) throws -> [Double] {
        precondition(batchSize >= 1 && range.lowerBound >= 0 && range.upperBound <= windows.count, "bad window range \(range) of \(windows.count)")
        let length = windows.modelSequenceLength
        let network = LlamaModel(config: model, microBatchSize: batchSize, sequenceLength: length, lora: lora, threads: threads)
        var tokens = [Int32](repeating: 0, count: batchSize * length)
        var targets = [Int32](repeating: CrossEntropy.defaultIgnoreIndex, count: batchSize * length)
        let positions = (0..<batchSize * length).map { Int32($0 % length) }
        var sums: [Double] = []
        sums.reserveCapacity(range.count)
        for batchStart in stride(from: range.lowerBound, to: range.upperBound, by: batchSize) {
            let batch = batchStart..<min(batchStart + batchSize, range.upperBound)
            tokens.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            targets.withUnsafeMutableBufferPointer { $0.update(repeating: CrossEntropy.defaultIgnoreIndex) }
            for (row, window) in batch.enumerated() {
                let inputs = windows.inputs(window)
                // The inputs and the token after them, the last window's last target.
                let read = try dataset.tokens(inputs.lowerBound..<min(inputs.upperBound + 1, windows.tokenCount))
                if let bad = read.firstIndex(where: { $0 < 0 || Int($0) >= model.vocabSize }) {
                    throw JobError("\(dataset.path): token \(inputs.lowerBound + bad) is id \(read[bad]), outside the model's vocabulary of \(model.vocabSize) ids")
                }
                for index in 0..<inputs.count {
                    tokens[row * length + index] = read[index]
                    if index + 1 < read.count { targets[row * length + index] = read[index + 1] }
                }
            }
            network.forward(tokens: tokens, targets: targets, positions: positions, parameters: parameters)
            let losses = network.tokenLosses
            for row in 0..<batch.count {
                var sum = 0.0
                for index in row * length..<(row + 1) * length { sum += Double(losses[index]) }
                sums.append(sum)
            }
        }
        return sums
    }

    /// Runs `tokens` (one document: positions 0..<T) through the model.
    public func evaluate(_ tokens: [Int32]) throws -> Result {
        guard tokens.count >= 2 else { throw CheckpointError(.rangeOutsideTensor, "eval needs at least 2 tokens, got \(tokens.count)") }
        guard tokens.count <= model.maxPositionEmbeddings else {
            throw CheckpointError(.rangeOutsideTensor, "\(tokens.count) tokens exceed max_position_embeddings \(model.maxPositionEmbeddings); pass --max-tokens")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= model.vocabSize }) {
            throw CheckpointError(.rangeOutsideTensor, "token id \(bad) is outside the model's vocabulary of \(model.vocabSize)")
        }
        let network = LlamaModel(config: model, microBatchSize: 1, sequenceLength: tokens.count, lora: lora, threads: threads)
        let positions = (0..<tokens.count).map { Int32($0) }
        let targets = Array(tokens.dropFirst()) + [CrossEntropy.defaultIgnoreIndex]
        let total = network.forward(tokens: tokens, targets: targets, positions: positions, parameters: parameters)
        let logits = network.logits(tokens: tokens, positions: positions, parameters: parameters)
        return Result(loss: total.mean, targets: total.targetCount, logits: logits)
    }
}

/// How `meshlm eval` cuts a stream of N tokens into windows of at most T positions so that every
/// token after the first is predicted exactly once: window w reads tokens w·T ..< min(w·T + T, N)
/// and predicts the token after each, so consecutive windows share one token (the last target of
/// one is the first input of the next) and the last window may be shorter.
public struct EvaluationWindows: Sendable, Equatable {
    /// N, the tokens of the stream evaluated.
    public let tokenCount: Int
    /// T, the positions of a window.
    public let sequenceLength: Int
    /// ⌈(N − 1) / T⌉, or fewer when limited.
    public let count: Int

    /// The windows over `tokenCount` tokens, the first `limit` of them if given. Needs N ≥ 2 and T ≥ 1.
    public init(tokenCount: Int, sequenceLength: Int, limit: Int? = nil) {
        precondition(tokenCount >= 2 && sequenceLength >= 1, "windows need 2 tokens and 1 position, not \(tokenCount) and \(sequenceLength)")
        let all = (tokenCount - 1 + sequenceLength - 1) / sequenceLength
        self.count = min(all, max(limit ?? all, 0))
        self.tokenCount = count == all ? tokenCount : count * sequenceLength + 1
        self.sequenceLength = sequenceLength
    }

    /// The stream positions window `window` reads; its targets are the positions after them
    /// (the stream's last token has none).
    public func inputs(_ window: Int) -> Range<Int> {
        let start = window * sequenceLength
        return start..<min(start + sequenceLength, tokenCount)
    }

    /// The tokens predicted: every one but the first, N − 1.
    public var targetCount: Int { tokenCount - 1 }

    /// The model's sequence length: T, or N when the stream is shorter.
    public var modelSequenceLength: Int { min(sequenceLength, tokenCount) }
}
