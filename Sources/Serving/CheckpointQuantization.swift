import Checkpoint
import Foundation
import Model
import Tensors

/// `meshlm ckpt quantize`: reads a checkpoint as serving does (adapters merged, a QLoRA base
/// dequantized), quantizes every projection, and writes one rank's shard with
/// `CheckpointWriter.writeOffline`.
public enum CheckpointQuantization {
    public struct Report: Sendable {
        public var stepDirectory: String
        /// Tensors written, and how many of them in a block format.
        public var tensors: Int
        public var quantized: Int
        /// The head's format, when it is quantized.
        public var head: QuantizedFormat?
        /// Bytes of all weights as written, and as f32.
        public var bytes: Int
        public var f32Bytes: Int
    }

    /// Files of the source step directory that are not copied: the checkpoint's own bookkeeping
    /// and the adapter config of adapters merged here.
    static let skippedFiles: Set<String> = [CheckpointFiles.indexName, CheckpointFiles.metadataName, CheckpointFiles.commitMarkerName,
                                            "adapter_config.json"]

    /// Largest |w| a block may hold: its scale (max|w|/127 for q8_0, max|w|/8 for q4_0) must be a
    /// finite f16 (≤ 65504).
    static let largestWeight: Float = 65504 * 8

    /// Why `config`'s projections cannot be stored in blocks of 32 along their rows, if they cannot.
    public static func blockProblem(_ config: LlamaConfig, format: QuantizedFormat) -> String? {
        let widths = [("hidden_size", config.hiddenSize), ("intermediate_size", config.intermediateSize),
                      ("num_attention_heads × head_dim", config.numAttentionHeads * config.headDim)]
        guard let (name, width) = widths.first(where: { $0.1 % QuantizedFormat.blockSize != 0 }) else { return nil }
        return "\(name) \(width) is not a multiple of \(QuantizedFormat.blockSize), the block of \(format.rawValue) (each block holds 32 weights of one row); this model cannot be quantized in these formats"
    }

    public static func quantize(checkpoint: String, output: String, format: QuantizedFormat, head: QuantizedFormat?,
                         compressionLevel: Int32) throws -> Report {
        let source = try CheckpointReader.locate(checkpoint)
        if let quantized = source.index.tensors.first(where: { $0.dtype.isQuantized }) {
            throw CheckpointError(.quantizedTensor, "checkpoint \(source.stepDirectory) is already quantized (tensor \(quantized.name) is \(quantized.dtype.rawValue)); quantize the f32 checkpoint it was made from")
        }
        let outputDirectory = CheckpointReader.resolve(output)
        let sourceParent = (source.stepDirectory as NSString).deletingLastPathComponent
        guard URL(fileURLWithPath: outputDirectory).standardizedFileURL != URL(fileURLWithPath: sourceParent).standardizedFileURL else {
            throw CheckpointError(.io, "--output \(output) is the checkpoints directory the source \(source.stepDirectory) is in; writing there would replace the source step: choose another directory")
        }
        let config = try InferenceWeights.config(checkpoint: source.stepDirectory)
        if let problem = blockProblem(config, format: format) {
            throw CheckpointError(.badIndex, "\(source.stepDirectory)/model_config.json: \(problem)")
        }
        let weights = try InferenceWeights.load(checkpoint: source.stepDirectory)
        let layout = weights.layout
        var slices: [CheckpointSliceValues] = []
        var report = Report(stepDirectory: "", tensors: layout.entries.count, quantized: 0, head: nil, bytes: 0, f32Bytes: 4 * layout.count)
        for entry in layout.entries {
            let values = UnsafeBufferPointer(start: weights.parameters.pointer + entry.offset, count: entry.count)
            let isHead = entry.role == .languageModelHead
            let entryFormat: QuantizedFormat? = InferenceWeights.quantizedRoles.contains(entry.role) ? format
                : isHead && !config.tieWordEmbeddings ? head : nil
            guard let entryFormat else {
                slices.append(CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count, values: Array(values)))
                report.bytes += 4 * entry.count
                continue
            }
            if let bad = values.firstIndex(where: { !$0.isFinite || Swift.abs($0) > largestWeight }) {
                throw CheckpointError(.badIndex, "\(source.stepDirectory): tensor \(entry.name) element \(bad) is \(values[bad]); \(entryFormat.rawValue) holds finite weights up to ±\(Int(largestWeight)) (f16 block scales): fix the checkpoint, or keep the head in f32 with --head f32")
            }
            let matrix = QuantizedMatrix(quantizing: values.baseAddress!, rowCount: entry.shape[0], columnCount: entry.rowWidth,
                                         format: entryFormat, threads: KernelThreads(count: ProcessInfo.processInfo.activeProcessorCount))
            let bytes = [UInt8](UnsafeRawBufferPointer(start: matrix.blocks, count: matrix.byteCount))
            slices.append(CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count,
                                                dtype: CheckpointDType(rawValue: entryFormat.rawValue)!, encoded: bytes))
            report.quantized += 1
            report.bytes += bytes.count
            if isHead { report.head = entryFormat }
        }
        var extras: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: source.stepDirectory)) ?? []
        where !skippedFiles.contains(name) && !name.hasPrefix("rank_") {
            extras[name] = source.file(named: name)
        }
        if let data = extras["run_config.json"],
           var run = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], run["lora"] != nil {
            run["lora"] = nil
            extras["run_config.json"] = try JSONSerialization.data(withJSONObject: run, options: [.prettyPrinted, .sortedKeys])
        }
        var quantizedInfo: [String: Any] = ["format": format.rawValue, "head": head?.rawValue ?? "f32"]
        if config.tieWordEmbeddings { quantizedInfo["head"] = "f32 (tied to the embeddings)" }
        let metadata = try JSONSerialization.data(withJSONObject: ["source": "quantize", "from": source.stepDirectory,
                                                                   "quantized": quantizedInfo] as [String: Any],
                                                  options: [.prettyPrinted, .sortedKeys])
        let declared = Dictionary(uniqueKeysWithValues: layout.entries.map { ($0.name, $0.shape) })
        report.stepDirectory = try CheckpointWriter.writeOffline(directory: outputDirectory, step: source.step, ranks: 1, declared: declared,
                                                                 metadata: metadata, extraFiles: extras,
                                                                 compressionLevel: compressionLevel) { _ in slices }
        return report
    }
}
