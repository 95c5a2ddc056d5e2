import Checkpoint
import Foundation
import Model
import Tensors

/// `meshlm eval --checkpoint`: the model of a checkpoint run forward on one sequence, on one
/// process — its next-token loss, and the logits for comparing with another implementation
/// (tools/check-hf-roundtrip.py compares them with transformers').
public final class CheckpointEvaluation {
    public let model: LlamaConfig
    public let stepDirectory: String
    private let parameters: ArenaParameters
    private let threads: KernelThreads

    public init(_ reader: CheckpointReader, threads: KernelThreads = .single, modelConfigOverride: String? = nil) throws {
        model = try CheckpointReshard.modelConfig(of: reader, override: modelConfigOverride)
        stepDirectory = reader.stepDirectory
        self.threads = threads
        let layout = ParameterLayout(config: model)
        parameters = ArenaParameters(layout: layout)
        for entry in layout.entries {
            let shape = try reader.shape(of: entry.name)
            guard shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(entry.name) has shape \(shape); model_config.json gives \(entry.shape)")
            }
            try reader.read(name: entry.name, elements: 0..<entry.count,
                            into: UnsafeMutableBufferPointer(start: parameters.parameters.pointer + entry.offset, count: entry.count))
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

    /// Runs `tokens` (one document: positions 0..<T) through the model.
    public func evaluate(_ tokens: [Int32]) throws -> Result {
        guard tokens.count >= 2 else { throw CheckpointError(.rangeOutsideTensor, "eval needs at least 2 tokens, got \(tokens.count)") }
        guard tokens.count <= model.maxPositionEmbeddings else {
            throw CheckpointError(.rangeOutsideTensor, "\(tokens.count) tokens exceed max_position_embeddings \(model.maxPositionEmbeddings); pass --max-tokens")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= model.vocabSize }) {
            throw CheckpointError(.rangeOutsideTensor, "token id \(bad) is outside the model's vocabulary of \(model.vocabSize)")
        }
        let network = LlamaModel(config: model, microBatchSize: 1, sequenceLength: tokens.count, threads: threads)
        let positions = (0..<tokens.count).map { Int32($0) }
        let targets = Array(tokens.dropFirst()) + [CrossEntropy.defaultIgnoreIndex]
        let total = network.forward(tokens: tokens, targets: targets, positions: positions, parameters: parameters)
        let logits = network.logits(tokens: tokens, positions: positions, parameters: parameters)
        return Result(loss: total.mean, targets: total.targetCount, logits: logits)
    }
}
