import Checkpoint
import Foundation
import Model
import Tensors

extension InferenceWeights {
    /// Merges the LoRA adapters a checkpoint holds (a LoRA run's, described by its
    /// `adapter_config.json`) into the weights just loaded, as PEFT's `merge_and_unload` does:
    /// W ← W + scaling · B·A for every adapted projection, in f32; with DoRA (`use_dora`)
    /// W ← m / ‖W + scaling·B·A‖_row ⊙ (W + scaling·B·A) (`LowRankAdapter.merge`, as `meshlm ckpt
    /// merge-lora` computes it). The engine then serves the
    /// fine-tuned model at the base model's speed. Under tensor parallelism each rank adds its
    /// slice of each merged projection. A checkpoint with adapters but no `adapter_config.json` is refused:
    /// serving its base alone would silently drop the fine-tuning.
    /// A QLoRA run's adapters merge into dequant(NF4(W)) of its base (`quantizedBase`), the
    /// weights they were trained against.
    func mergeAdapters(from reader: CheckpointReader, stepDirectory: String, quantizedBase: QuantizedBaseSource?) throws(ServingError) {
        let configPath = stepDirectory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            if let adapter = reader.tensorNames.first(where: { $0.contains(".lora_A.") }) {
                throw ServingError(.checkpoint, "checkpoint \(stepDirectory) holds LoRA adapters (\(adapter), …) but no adapter_config.json to say how to merge them; it was not written by this MeshLM")
            }
            return
        }
        let lora = try LoRAConfig.decoded(data, path: configPath)
        for layer in 0..<config.numHiddenLayers {
            for projection in lora.targets {
                let prefix = "model.layers.\(layer).\(projection.path)"
                let (output, input) = projection.shape(config)
                var merged: [Float]
                do {
                    let a = try reader.read(name: prefix + ".lora_A.weight")
                    let b = try reader.read(name: prefix + ".lora_B.weight")
                    guard a.count == lora.rank * input, b.count == output * lora.rank else {
                        throw ServingError(.checkpoint, "checkpoint \(stepDirectory): \(prefix)'s adapters do not have rank \(lora.rank) as \(configPath) says")
                    }
                    var magnitude: [Float]?
                    if lora.weightDecomposed {
                        magnitude = try reader.read(name: prefix + LoRAConfig.magnitudeSuffix)
                        guard magnitude?.count == output else {
                            throw ServingError(.checkpoint, "checkpoint \(stepDirectory): \(prefix)\(LoRAConfig.magnitudeSuffix) holds \(magnitude?.count ?? 0) values for \(output) rows")
                        }
                    }
                    let name = prefix + ".weight"
                    if let quantizedBase, quantizedBase.supplies(name) {
                        merged = try quantizedBase.dequantized(name)
                    } else {
                        merged = try reader.read(name: name)
                    }
                    guard merged.count == output * input else {
                        throw ServingError(.checkpoint, "checkpoint \(stepDirectory): \(prefix).weight holds \(merged.count) values for [\(output), \(input)]")
                    }
                    LowRankAdapter.merge(weight: &merged, a: a, b: b, magnitude: magnitude, scaling: lora.scaling,
                                         inputSize: input, outputSize: output, rank: lora.rank)
                } catch let error as ServingError {
                    throw error
                } catch {
                    throw ServingError(.checkpoint, "checkpoint \(stepDirectory): \(error)")
                }
                writeSlice(of: merged, to: prefix + ".weight")
            }
        }
    }

    /// Writes this rank's slice of dequant(NF4(W)) of the base's tensor `name`: the weight a
    /// QLoRA run trained its adapters against (`QLoRAMergeBase.dequantized`), quantized whole
    /// as one rank and data parallelism quantize it.
    func loadQuantized(_ name: String, from source: QuantizedBaseSource) throws(ServingError) {
        writeSlice(of: try source.dequantized(name), to: name)
    }

    /// Writes this rank's slice of the whole-model tensor `values` into the local tensor `name`.
    private func writeSlice(of values: [Float], to name: String) {
        guard let index = layout.index(named: name) else { preconditionFailure("the layout has no \(name)") }
        let entry = layout.entries[index]
        let destination = parameters.pointer + entry.offset
        let runs = tensorParallel?.globalRuns(index, elements: 0..<entry.count) ?? [(0..<entry.count, 0)]
        for run in runs {
            for (offset, element) in run.global.enumerated() { destination[run.localStart + offset] = values[element] }
        }
    }
}

/// Where a QLoRA checkpoint's quantized tensors come from (`metadata.json`'s `quantized_base`
/// and `base_checkpoint`, read by `CheckpointTensors`): the base checkpoint's f32 W, which
/// serving requantizes to dequant(NF4(W)) so the merged adapters give the trained model.
struct QuantizedBaseSource {
    let tensors: CheckpointTensors
    /// What the error messages name: the checkpoint and its base.
    let origin: String

    /// nil for a checkpoint that is not a QLoRA run's.
    init?(reader checkpoint: CheckpointReader, stepDirectory: String) throws(ServingError) {
        do {
            tensors = try CheckpointTensors(checkpoint)
        } catch {
            throw ServingError(.checkpoint, "\(error)")
        }
        guard let base = tensors.quantizedBase else { return nil }
        origin = "checkpoint \(stepDirectory) (a QLoRA run's) reads its base projections from base_checkpoint \(base.stepDirectory)"
    }

    /// Whether `name` comes from the base: the checkpoint lacks it.
    func supplies(_ name: String) -> Bool { tensors.fromBase(name) }

    /// dequant(NF4(W)) of the base's whole tensor `name`.
    func dequantized(_ name: String) throws(ServingError) -> [Float] {
        do {
            return try tensors.read(name, base: QLoRAMergeBase.dequantized.base)
        } catch {
            throw ServingError(.checkpoint, "\(origin): \(error)")
        }
    }
}

extension LoRAConfig {
    /// An `adapter_config.json`'s contents, decoded and validated; an error names `path` (after
    /// `context`, when given).
    static func decoded(_ data: Data, path: String, context: String = "") throws(ServingError) -> LoRAConfig {
        do {
            let lora = try JSONDecoder().decode(LoRAConfig.self, from: data)
            try lora.validate()
            return lora
        } catch {
            throw ServingError(.checkpoint, "\(context)\(path): \(error)")
        }
    }
}
