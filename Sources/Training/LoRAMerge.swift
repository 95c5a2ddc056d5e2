import Checkpoint
import Foundation
import Model
import Tensors

/// `meshlm ckpt merge-lora`: a LoRA checkpoint as a plain one. Every adapted projection becomes
/// W + scaling·B·A, computed in f32 by `LowRankAdapter.merge` (with DoRA, scaled to the magnitudes; the merge serving does at
/// load); `modules_to_save` tensors are already stored as trained. The result has no adapter
/// tensors, no `adapter_config.json` and no `lora:` section in `run_config.json`, so it trains,
/// serves, exports and reshards as any base model.
public enum LoRAMerge {
    public struct Report: Sendable {
        public var stepDirectory: String
        public var lora: LoRAConfig
        /// The projection weights that changed (layers × targets).
        public var merged: Int
        public var tensors: Int
        /// A QLoRA checkpoint's: the base its adapters were merged into.
        public var quantizedBase: QLoRAMergeBase?
    }

    /// `qloraBase`: for a QLoRA run's checkpoint, whether the adapters merge into dequant(NF4(W))
    /// (what they were trained against) or the base checkpoint's original W.
    public static func merge(_ reader: CheckpointReader, output: String, compressionLevel: Int32 = 1,
                             qloraBase: QLoRAMergeBase = .dequantized) throws -> Report {
        guard let lora = try PeftAdapter.lora(of: reader) else {
            throw CheckpointError(.missingFile, "\(reader.stepDirectory) has no \(CheckpointExtras.adapterConfigName): it holds no LoRA adapters to merge (it is a plain checkpoint already)")
        }
        let model = try CheckpointReshard.modelConfig(of: reader)
        try PeftAdapter.checkTensors(of: reader, lora: lora, model: model)
        let layout = ParameterLayout(config: model)
        let tensors = try CheckpointTensors(reader)
        for entry in layout.entries {
            let shape = try tensors.shape(of: entry.name)
            guard shape == entry.shape else {
                throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(entry.name) has shape \(shape); model_config.json gives \(entry.shape)")
            }
        }
        // Each adapted weight's name, with the adapter's prefix and sizes.
        var adapted: [String: (prefix: String, output: Int, input: Int)] = [:]
        for layer in 0..<model.numHiddenLayers {
            for projection in lora.targets {
                let prefix = "model.layers.\(layer).\(projection.path)"
                let (output, input) = projection.shape(model)
                adapted[prefix + ".weight"] = (prefix, output, input)
            }
        }
        var extras: [String: Data] = [:]
        let skipped: Set<String> = [CheckpointFiles.indexName, CheckpointFiles.metadataName, CheckpointFiles.commitMarkerName,
                                    CheckpointExtras.adapterConfigName]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: reader.stepDirectory)) ?? []
        where !skipped.contains(name) && !name.hasPrefix("rank_") {
            extras[name] = reader.file(named: name)
        }
        if let data = extras[CheckpointExtras.runConfigName],
           var run = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], run["lora"] != nil {
            run["lora"] = nil
            extras[CheckpointExtras.runConfigName] = try JSONSerialization.data(withJSONObject: run, options: [.prettyPrinted, .sortedKeys])
        }
        let adapterConfig = try JSONSerialization.jsonObject(with: try CheckpointExtras.adapterConfig(lora))
        let metadata = try JSONSerialization.data(withJSONObject: ["source": "merge-lora", "from": reader.stepDirectory,
                                                                   "merged_adapter": adapterConfig] as [String: Any],
                                                  options: [.prettyPrinted, .sortedKeys])
        let declared = Dictionary(uniqueKeysWithValues: layout.entries.map { ($0.name, $0.shape) })
        let stepDirectory = try CheckpointWriter.writeOffline(directory: output, step: reader.step, ranks: 1, declared: declared,
                                                              metadata: metadata, extraFiles: extras, compressionLevel: compressionLevel) { _ in
            try layout.entries.map { entry in
                var values = try tensors.read(entry.name, base: qloraBase.base)
                if let (prefix, output, input) = adapted[entry.name] {
                    let a = try reader.read(name: prefix + ".lora_A.weight")
                    let b = try reader.read(name: prefix + ".lora_B.weight")
                    let magnitude = lora.weightDecomposed ? try reader.read(name: prefix + LoRAConfig.magnitudeSuffix) : nil
                    guard magnitude.map({ $0.count == output }) ?? true else {
                        throw CheckpointError(.badIndex, "\(reader.stepDirectory): \(prefix)\(LoRAConfig.magnitudeSuffix) holds \(magnitude?.count ?? 0) values for \(output) rows")
                    }
                    LowRankAdapter.merge(weight: &values, a: a, b: b, magnitude: magnitude, scaling: lora.scaling,
                                         inputSize: input, outputSize: output, rank: lora.rank)
                }
                return CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count, values: values)
            }
        }
        return Report(stepDirectory: stepDirectory, lora: lora, merged: adapted.count, tensors: layout.entries.count,
                      quantizedBase: tensors.quantizedBase == nil ? nil : qloraBase)
    }
}
