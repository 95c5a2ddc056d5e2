import Foundation
import Checkpoint
import Model
import Parallel
import Runtime
import Tensors

/// A model's parameters for inference: one arena in `ParameterLayout` order and no gradients
/// (training's `ArenaParameters` would double the memory). Under tensor parallelism the arena
/// holds only this rank's slices (`TensorParallelLayout`: heads, MLP slice and vocabulary slice).
public final class InferenceWeights: ParameterAccess, @unchecked Sendable {
    /// The whole model's config.
    public let config: LlamaConfig
    /// The sizes this arena holds: `config` itself, or this rank's share under tensor parallelism.
    public let localConfig: LlamaConfig
    /// The split, when the model is spread over several ranks.
    public let tensorParallel: TensorParallelLayout?
    /// The layout of `localConfig`.
    public let layout: ParameterLayout
    /// All parameters, `layout.count` floats. A quantized projection's floats are released
    /// (zero) and its weights live in `quantized` (InferenceWeights+Quantized.swift).
    public let parameters: Tensor
    /// Quantized products by the arena offset of their (first) weight.
    var quantized: [Int: QuantizedMatrix] = [:]
    /// The tensors held in `quantized` rather than `parameters`.
    var quantizedEntries: Set<String> = []

    public init(config: LlamaConfig) {
        self.config = config
        self.localConfig = config
        self.tensorParallel = nil
        self.layout = ParameterLayout(config: config)
        self.parameters = Tensor(shape: [layout.count])
    }

    /// An empty arena for this rank's slices of a tensor-parallel model.
    public init(tensorParallel split: TensorParallelLayout) {
        self.config = split.globalConfig
        self.localConfig = split.localConfig
        self.tensorParallel = split
        self.layout = split.localLayout
        self.parameters = Tensor(shape: [layout.count])
    }

    /// This rank's slices of `LlamaModel`'s initialization of the whole model (benchmarks).
    public static func random(tensorParallel split: TensorParallelLayout, seed: UInt64) -> InferenceWeights {
        let weights = InferenceWeights(tensorParallel: split)
        split.initialize(weights.parameters.pointer, seed: seed)
        return weights
    }

    /// Random weights as `LlamaModel` initializes them for training (benchmarks and tests).
    public static func random(config: LlamaConfig, seed: UInt64) -> InferenceWeights {
        let weights = InferenceWeights(config: config)
        var generator = SplitMix64(seed: seed)
        for entry in weights.layout.entries {
            let values = weights.parameters.pointer + entry.offset
            if entry.role.isNorm {
                values.update(repeating: 1, count: entry.count)
            } else {
                for index in 0..<entry.count { values[index] = 0.02 * generator.nextNormal() }
            }
        }
        return weights
    }

    /// The shape of the model in a checkpoint (its step's `model_config.json`), checked, without
    /// reading a tensor: what a caller sizes buffers by before `load`.
    public static func config(checkpoint directory: String) throws(ServingError) -> LlamaConfig {
        let configPath = try resolveStepDirectory(directory) + "/model_config.json"
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw ServingError(.checkpoint, "\(configPath) is missing: the checkpoint has no model config (re-save it with a MeshLM that writes model_config.json, or import the model with `meshlm ckpt import-hf`)")
        }
        let config: LlamaConfig
        do {
            config = try JSONDecoder().decode(LlamaConfig.self, from: configData)
            try config.validate()
        } catch {
            throw ServingError(.checkpoint, "\(configPath): \(describe(error))")
        }
        guard !config.hasScoreHead else {
            throw ServingError(.checkpoint, "\(configPath): the model has a scalar head (num_labels \(config.numLabels): a reward or value model) and no language-model head; it scores sequences and cannot generate text")
        }
        return config
    }

    /// The model in a checkpoint step directory: `model_config.json` (Hugging Face config.json
    /// format) gives the shape, and every tensor of the layout is read by its HF name; a LoRA
    /// run's adapters are merged in (`mergeAdapters`).
    ///
    /// With `tensorParallel` (degree, rank), only this rank's slices are read: one run per
    /// tensor for row splits, one per row for the column splits of o_proj and down_proj.
    public static func load(checkpoint directory: String,
                            tensorParallel: (degree: Int, rank: Int)? = nil) throws(ServingError) -> InferenceWeights {
        let stepDirectory = try resolveStepDirectory(directory)
        let configPath = stepDirectory + "/model_config.json"
        let config = try self.config(checkpoint: directory)
        let reader: CheckpointReader
        do { reader = try CheckpointReader(stepDirectory: stepDirectory) } catch {
            throw ServingError(.checkpoint, error.description)
        }
        let weights: InferenceWeights
        if let tensorParallel, tensorParallel.degree > 1 {
            let split = try tensorParallelLayout(config: config, degree: tensorParallel.degree, rank: tensorParallel.rank,
                                                 source: configPath)
            weights = InferenceWeights(tensorParallel: split)
        } else {
            weights = InferenceWeights(config: config)
        }
        let globalLayout = weights.tensorParallel?.globalLayout ?? weights.layout
        // A QLoRA run's checkpoint lacks its quantized tensors: they come from its base.
        let quantizedBase = try QuantizedBaseSource(reader: reader, stepDirectory: stepDirectory)
        // A quantized checkpoint's (`meshlm ckpt quantize`) block-format tensors.
        var blockTensors: [String: QuantizedMatrix] = [:]
        for (index, entry) in weights.layout.entries.enumerated() {
            if let quantizedBase, quantizedBase.supplies(entry.name) {
                try weights.loadQuantized(entry.name, from: quantizedBase)
                continue
            }
            do {
                let saved = try reader.tensor(named: entry.name)
                let shape = saved.shape
                guard let globalShape = globalLayout.entry(named: entry.name)?.shape, shape == globalShape else {
                    throw ServingError(.checkpoint, "checkpoint \(stepDirectory): tensor \(entry.name) has shape \(shape) but \(configPath) implies \(globalLayout.entry(named: entry.name)?.shape ?? [])")
                }
                if saved.dtype.isQuantized {
                    guard entry.role != .embedding else {
                        throw ServingError(.checkpoint, "checkpoint \(stepDirectory): tensor \(entry.name) is stored as \(saved.dtype.rawValue), but serving reads embeddings in f32 only; quantize the f32 checkpoint again with `meshlm ckpt quantize`")
                    }
                    blockTensors[entry.name] = try weights.readQuantized(entry, index: index, dtype: saved.dtype, from: reader)
                    continue
                }
                let destination = weights.parameters.pointer + entry.offset
                if let split = weights.tensorParallel {
                    let runs = split.globalRuns(index, elements: 0..<entry.count).map {
                        ElementRun(elements: $0.global, destination: destination + $0.localStart)
                    }
                    try reader.read(name: entry.name, runs: runs)
                } else {
                    let output = UnsafeMutableBufferPointer(start: destination, count: entry.count)
                    try reader.read(name: entry.name, elements: 0..<entry.count, into: output)
                }
            } catch let error as ServingError {
                throw error
            } catch let error as CheckpointError {
                throw ServingError(.checkpoint, error.description)
            } catch {
                throw ServingError(.checkpoint, "\(error)")
            }
        }
        if !blockTensors.isEmpty {
            try checkQuantizedGroups(blockTensors, layout: weights.layout, stepDirectory: stepDirectory)
            guard reader.tensorNames.allSatisfy({ !$0.contains(".lora_") }) else {
                throw ServingError(.checkpoint, "checkpoint \(stepDirectory) holds quantized tensors and LoRA adapters; adapters are merged into f32 weights: quantize the checkpoint after merging (`meshlm ckpt quantize` merges them)")
            }
            weights.install(blockTensors)
        }
        try weights.mergeAdapters(from: reader, stepDirectory: stepDirectory, quantizedBase: quantizedBase)
        return weights
    }

    /// q/k/v and gate/up run as one product each: they must be all quantized, in one format, or
    /// all f32.
    static func checkQuantizedGroups(_ tensors: [String: QuantizedMatrix], layout: ParameterLayout,
                                     stepDirectory: String) throws(ServingError) {
        for layer in 0..<layout.entries.filter({ $0.role == .inputNorm }).count {
            for group in [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["mlp.gate_proj", "mlp.up_proj"]] {
                let names = group.map { "model.layers.\(layer).\($0).weight" }
                let formats = names.map { tensors[$0].map(\.format.rawValue) ?? "f32" }
                guard Set(formats).count == 1 else {
                    throw ServingError(.checkpoint, "checkpoint \(stepDirectory): \(zip(names, formats).map { "\($0) is \($1)" }.joined(separator: ", ")); these run as one product and must share one format: quantize the f32 checkpoint again with `meshlm ckpt quantize`")
                }
            }
        }
    }

    /// The split of `config` over `degree` ranks, after checking that the model divides
    /// (`source` names the config's file in the message).
    public static func tensorParallelLayout(config: LlamaConfig, degree: Int, rank: Int,
                                            source: String) throws(ServingError) -> TensorParallelLayout {
        do {
            try ModelSplit.validate(config, on: try ParallelDims(worldSize: degree, tensorDegree: degree))
        } catch {
            throw ServingError(.checkpoint, "\(source): cannot split the model over \(degree) tensor-parallel ranks: \(error) (start a number of ranks with mpirun -np that fits)")
        }
        return TensorParallelLayout(config: config, degree: degree, rank: rank)
    }

    /// A run directory (with `checkpoints/`), a checkpoints directory, or one step directory
    /// (`CheckpointReader.locate`, which every command taking a checkpoint uses).
    public static func resolveStepDirectory(_ path: String) throws(ServingError) -> String {
        do { return try CheckpointReader.locate(path).stepDirectory } catch {
            throw ServingError(.checkpoint, error.description)
        }
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
