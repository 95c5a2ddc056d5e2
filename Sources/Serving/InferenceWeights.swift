import Foundation
import Checkpoint
import Model
import Tensors

/// A model's parameters for inference: one arena in `ParameterLayout` order and no gradients
/// (training's `ArenaParameters` would double the memory).
public final class InferenceWeights: ParameterAccess, @unchecked Sendable {
    public let config: LlamaConfig
    public let layout: ParameterLayout
    /// All parameters, `layout.count` floats.
    public let parameters: Tensor

    public init(config: LlamaConfig) {
        self.config = config
        self.layout = ParameterLayout(config: config)
        self.parameters = Tensor(shape: [layout.count])
    }

    /// Random weights as `LlamaModel` initializes them for training (benchmarks and tests).
    public static func random(config: LlamaConfig, seed: UInt64) -> InferenceWeights {
        let weights = InferenceWeights(config: config)
        var generator = SplitMix64(seed: seed)
        for entry in weights.layout.entries {
            let values = weights.parameters.pointer + entry.offset
            if entry.decays {
                for index in 0..<entry.count { values[index] = 0.02 * generator.nextNormal() }
            } else {
                values.update(repeating: 1, count: entry.count)
            }
        }
        return weights
    }

    /// The model in a checkpoint step directory: `model_config.json` (Hugging Face config.json
    /// format) gives the shape, and every tensor of the layout is read by its HF name.
    public static func load(checkpoint directory: String) throws(ServingError) -> InferenceWeights {
        let stepDirectory = try resolveStepDirectory(directory)
        let configPath = stepDirectory + "/model_config.json"
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw ServingError(.checkpoint, "\(configPath) is missing: the checkpoint has no model config (re-save it with a MeshLM that writes model_config.json, or import the model with `meshlm ckpt import-hf`)")
        }
        let config: LlamaConfig
        do {
            config = try JSONDecoder().decode(LlamaConfig.self, from: configData)
            try config.validate()
        } catch {
            throw ServingError(.checkpoint, "\(configPath): \(error)")
        }
        let reader: CheckpointReader
        do { reader = try CheckpointReader(stepDirectory: stepDirectory) } catch {
            throw ServingError(.checkpoint, error.description)
        }
        let weights = InferenceWeights(config: config)
        for entry in weights.layout.entries {
            do {
                let shape = try reader.shape(of: entry.name)
                guard shape == entry.shape else {
                    throw ServingError(.checkpoint, "checkpoint \(stepDirectory): tensor \(entry.name) has shape \(shape) but \(configPath) implies \(entry.shape)")
                }
                let output = UnsafeMutableBufferPointer(start: weights.parameters.pointer + entry.offset, count: entry.count)
                try reader.read(name: entry.name, elements: 0..<entry.count, into: output)
            } catch let error as ServingError {
                throw error
            } catch let error as CheckpointError {
                throw ServingError(.checkpoint, error.description)
            } catch {
                throw ServingError(.checkpoint, "\(error)")
            }
        }
        return weights
    }

    /// A run directory (with `checkpoints/`), a checkpoints directory, or one step directory.
    public static func resolveStepDirectory(_ path: String) throws(ServingError) -> String {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: path + "/index.json") { return path }
        for candidate in [path + "/checkpoints", path] where fileManager.fileExists(atPath: candidate) {
            let latest = CheckpointReader.latest(in: candidate)
            if let reader = latest.reader { return reader.stepDirectory }
        }
        throw ServingError(.checkpoint, "no committed checkpoint at \(path): give a step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory")
    }

    public func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        parameters.pointer + layout.range(of: block).lowerBound
    }

    public func releaseParameters(_ block: ModelBlock) {}

    public func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        preconditionFailure("inference weights have no gradients")
    }

    public func releaseGradients(_ block: ModelBlock) {}
}
