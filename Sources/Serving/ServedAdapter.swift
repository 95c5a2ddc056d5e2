import Checkpoint
import Foundation
import Runtime
import Model
import Tensors

/// One LoRA adapter served beside the base weights, unmerged (`meshlm serve --lora NAME=DIR`):
/// the rows of a batch whose sequence uses it compute, for every adapted projection,
///
///     y = x·Wᵀ + scaling · (x·Aᵀ)·Bᵀ      A [r, in]   B [out, r]
///
/// (`AdapterDelta`), and every other row sees W alone, so one engine step serves sequences of
/// several adapters and of the base together. Merging (`InferenceWeights.mergeAdapters`) gives
/// the same logits for one adapter; unmerged, any number share one copy of the base.
///
/// Plain LoRA only: DoRA's magnitude rescales whole rows of W (not a term added to it) and
/// `modules_to_save` replaces whole tensors; such adapters are served merged
/// (`meshlm ckpt merge-lora`, then `--checkpoint`).
///
///     factors   one arena: per layer, per target in `Projection` order, A [r, in] then Bᵀ [r, out]
///               (B transposed once at load, for `AdapterDelta`'s decode loop)
public final class ServedAdapter: @unchecked Sendable {
    /// The model id requests name it by.
    public let name: String
    /// The directory it was read from (`/v1/models`' `root`).
    public let root: String
    public let rank: Int
    public let scaling: Float
    /// The adapted projections, in `Projection` order.
    public let targets: [Projection]
    private let factors: Tensor
    /// Per layer, per target: where A and B start in `factors`.
    private let offsets: [[Projection: (a: Int, b: Int)]]

    /// Reads the adapter's tensors by their MeshLM (= transformers) names through `read`, which
    /// gives a tensor's shape and values or nil when the source lacks it, and checks each against
    /// the base `config` (`source` names the directory in messages).
    public init(name: String, root: String, lora: LoRAConfig, base config: LlamaConfig, source: String,
                read: (String) throws -> (shape: [Int], values: [Float])?) throws(ServingError) {
        try Self.checkServable(lora, source: "adapter \(name) (\(source))")
        self.name = name
        self.root = root
        rank = lora.rank
        scaling = lora.scaling
        targets = lora.targets
        let perLayer = lora.targets.reduce(0) { total, projection in
            let (output, input) = projection.shape(config)
            return total + lora.rank * (input + output)
        }
        let factors = Tensor(shape: [config.numHiddenLayers * perLayer])
        var offsets: [[Projection: (a: Int, b: Int)]] = []
        var next = 0
        for layer in 0..<config.numHiddenLayers {
            var layerOffsets: [Projection: (a: Int, b: Int)] = [:]
            for projection in lora.targets {
                let (output, input) = projection.shape(config)
                let prefix = "model.layers.\(layer).\(projection.path)"
                var starts: [Int] = []
                for (suffix, shape) in [(".lora_A.weight", [lora.rank, input]), (".lora_B.weight", [output, lora.rank])] {
                    let tensor: (shape: [Int], values: [Float])?
                    do { tensor = try read(prefix + suffix) } catch {
                        throw ServingError(.checkpoint, "adapter \(name) (\(source)): \(error)")
                    }
                    guard let tensor else {
                        throw ServingError(.checkpoint, "adapter \(name) (\(source)) has no tensor \(prefix + suffix), which its adapter_config.json (target_modules \(lora.targets.map(\.moduleName)), r \(lora.rank)) and the base's \(config.numHiddenLayers) layers imply")
                    }
                    guard tensor.shape == shape, tensor.values.count == shape.reduce(1, *) else {
                        throw ServingError(.checkpoint, "adapter \(name) (\(source)): \(prefix + suffix) has shape \(tensor.shape) but the served base (hidden_size \(config.hiddenSize), intermediate_size \(config.intermediateSize)) with r \(lora.rank) needs \(shape): the adapter was trained on another base")
                    }
                    let destination = factors.pointer + next
                    if suffix == ".lora_B.weight" {
                        for row in 0..<output {
                            for column in 0..<lora.rank { destination[column * output + row] = tensor.values[row * lora.rank + column] }
                        }
                    } else {
                        tensor.values.withUnsafeBufferPointer { destination.update(from: $0.baseAddress!, count: $0.count) }
                    }
                    starts.append(next)
                    next += tensor.values.count
                }
                layerOffsets[projection] = (starts[0], starts[1])
            }
            offsets.append(layerOffsets)
        }
        self.factors = factors
        self.offsets = offsets
    }

    /// Refuses what an unmerged adapter cannot be: DoRA and `modules_to_save`.
    public static func checkServable(_ lora: LoRAConfig, source: String) throws(ServingError) {
        if lora.weightDecomposed {
            throw ServingError(.checkpoint, "\(source) is a DoRA adapter (use_dora): its magnitudes rescale whole rows of the base weights, which a batch shared with other adapters cannot do; merge it with `meshlm ckpt merge-lora` and serve the merged checkpoint with --checkpoint")
        }
        if !lora.modulesToSave.isEmpty {
            throw ServingError(.checkpoint, "\(source) trains whole modules besides its adapters (modules_to_save \(lora.modulesToSave)), which replace tensors of the base for every sequence; merge it with `meshlm ckpt merge-lora` and serve the merged checkpoint with --checkpoint")
        }
    }

    /// A [r, in] and Bᵀ [r, out] of `projection` in `layer`, or nil when the adapter leaves it alone.
    func factors(layer: Int, _ projection: Projection) -> (a: UnsafePointer<Float>, bTransposed: UnsafePointer<Float>)? {
        guard let start = offsets[layer][projection] else { return nil }
        return (UnsafePointer(factors.pointer + start.a), UnsafePointer(factors.pointer + start.b))
    }

    /// The adapter of a MeshLM LoRA run's checkpoint (`directory`: a run, checkpoints or step
    /// directory, as `--checkpoint` takes): its `adapter_config.json` and adapter tensors. Its
    /// `model_config.json` must match the base in every size an adapter depends on.
    public static func load(name: String, checkpoint directory: String, base config: LlamaConfig) throws(ServingError) -> ServedAdapter {
        let stepDirectory: String
        do { stepDirectory = try InferenceWeights.resolveStepDirectory(directory) } catch {
            throw ServingError(.checkpoint, "adapter \(name): \(directory) has no adapter_config.json and no checkpoint: give a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) or a MeshLM LoRA run's checkpoint")
        }
        let configPath = stepDirectory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ServingError(.checkpoint, "adapter \(name): \(configPath) is missing: \(directory) is not a LoRA checkpoint (a MeshLM LoRA run's checkpoint or a PEFT adapter directory holds adapter_config.json)")
        }
        let lora = try LoRAConfig.decoded(data, path: configPath, context: "adapter \(name): ")
        if let modelData = FileManager.default.contents(atPath: stepDirectory + "/model_config.json") {
            let trained: LlamaConfig
            do { trained = try JSONDecoder().decode(LlamaConfig.self, from: modelData) } catch {
                throw ServingError(.checkpoint, "adapter \(name): \(stepDirectory)/model_config.json: \(describe(error))")
            }
            try checkFits(trained: trained, base: config, name: name, source: stepDirectory + "/model_config.json")
        }
        let reader: CheckpointReader
        do { reader = try CheckpointReader(stepDirectory: stepDirectory) } catch {
            throw ServingError(.checkpoint, "adapter \(name): \(error.description)")
        }
        let names = Set(reader.tensorNames)
        return try ServedAdapter(name: name, root: directory, lora: lora, base: config, source: stepDirectory) { tensor in
            guard names.contains(tensor) else { return nil }
            return (try reader.shape(of: tensor), try reader.read(name: tensor))
        }
    }

    /// Checks that the model an adapter was trained on has the base's sizes.
    static func checkFits(trained: LlamaConfig, base: LlamaConfig, name: String, source: String) throws(ServingError) {
        let sizes: [(String, Int, Int)] = [
            ("hidden_size", trained.hiddenSize, base.hiddenSize), ("num_hidden_layers", trained.numHiddenLayers, base.numHiddenLayers),
            ("vocab_size", trained.vocabSize, base.vocabSize), ("intermediate_size", trained.intermediateSize, base.intermediateSize),
            ("num_attention_heads", trained.numAttentionHeads, base.numAttentionHeads),
            ("num_key_value_heads", trained.numKeyValueHeads, base.numKeyValueHeads), ("head_dim", trained.headDim, base.headDim),
        ]
        if let (key, adapter, served) = sizes.first(where: { $0.1 != $0.2 }) {
            throw ServingError(.checkpoint, "adapter \(name) was trained on a model with \(key) \(adapter) (\(source)) but the served base has \(key) \(served): an adapter fits only the base it was trained on")
        }
    }
}
