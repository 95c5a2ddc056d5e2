import Checkpoint
import Foundation

/// What `meshlm ckpt inspect` shows of a checkpoint: every tensor with its shape, dtype, size
/// and slices, the bytes of every shard file, the mesh and step it was saved at, and how well
/// zstd compressed it. Read from `index.json` and `metadata.json` only (no tensor data).
public struct CheckpointInspection: Sendable {
    public struct TensorRow: Sendable {
        public var name: String
        public var shape: [Int]
        public var dtype: String
        public var elements: Int
        public var bytes: Int
        public var compressedBytes: Int
        public var slices: Int
    }

    public var stepDirectory: String
    public var step: Int
    public var worldSize: Int
    public var state: PretrainCheckpointState?
    public var tensors: [TensorRow]
    /// Compressed bytes the index places in each shard file, and the file's size on disk (nil
    /// when it is missing).
    public var files: [(name: String, indexed: Int, onDisk: Int?)]
    public var extraFiles: [String]

    public var totalBytes: Int { tensors.reduce(0) { $0 + $1.bytes } }
    public var totalCompressedBytes: Int { tensors.reduce(0) { $0 + $1.compressedBytes } }
    public var compressionRatio: Double { Double(totalBytes) / Double(max(totalCompressedBytes, 1)) }

    public init(_ reader: CheckpointReader) {
        stepDirectory = reader.stepDirectory
        step = reader.step
        worldSize = reader.index.worldSize
        state = try? JSONDecoder().decode(PretrainCheckpointState.self, from: reader.metadata)
        tensors = reader.index.tensors.map { tensor in
            TensorRow(name: tensor.name, shape: tensor.shape, dtype: tensor.dtype.rawValue, elements: tensor.elementCount,
                      bytes: tensor.dtype.byteCount(elements: tensor.elementCount),
                      compressedBytes: tensor.slices.reduce(0) { $0 + $1.length }, slices: tensor.slices.count)
        }
        let indexed = reader.compressedBytesPerFile
        files = (0..<reader.index.worldSize).map { rank in
            let name = CheckpointFiles.shardName(rank: rank)
            let size = (try? FileManager.default.attributesOfItem(atPath: reader.stepDirectory + "/" + name))?[.size] as? Int
            return (name, indexed[name] ?? 0, size)
        }
        let known: Set<String> = [CheckpointFiles.indexName, CheckpointFiles.metadataName, CheckpointFiles.commitMarkerName]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: reader.stepDirectory)) ?? []
        extraFiles = names.filter { !known.contains($0) && !$0.hasPrefix("rank_") }.sorted()
    }

    /// The mesh, in words.
    public var meshDescription: String {
        guard let state else { return "\(worldSize) shard file\(worldSize == 1 ? "" : "s") (no pretraining state: imported or converted)" }
        return "dp \(state.dataParallelDegree), ZeRO-\(state.zeroStage), tp 1, pp 1 (\(worldSize) rank\(worldSize == 1 ? "" : "s"))"
    }

    /// The readable table.
    public func table() -> String {
        var lines: [String] = []
        lines.append("checkpoint \(stepDirectory)")
        var head = "step \(step); saved on \(meshDescription)"
        if let state { head += "; next step \(state.nextStep), \(state.consumedSamples) samples consumed, seed \(state.seed)" }
        lines.append(head)
        lines.append(String(format: "%d tensors, %@ uncompressed, %@ in files, zstd ratio %.3f",
                            tensors.count, bytesText(totalBytes), bytesText(totalCompressedBytes), compressionRatio))
        lines.append("")
        let nameWidth = max(6, tensors.map(\.name.count).max() ?? 0)
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return right ? fill + text : text + fill
        }
        lines.append(pad("tensor", nameWidth) + "  " + pad("shape", 16) + "  dtype  " + pad("bytes", 10, right: true) + "  "
                     + pad("stored", 10, right: true) + "  " + pad("ratio", 6, right: true) + "  slices")
        for row in tensors {
            let ratio = String(format: "%.2f", Double(row.bytes) / Double(max(row.compressedBytes, 1)))
            lines.append(pad(row.name, nameWidth) + "  " + pad("[" + row.shape.map(String.init).joined(separator: ", ") + "]", 16) + "  "
                         + pad(row.dtype, 5) + "  " + pad(bytesText(row.bytes), 10, right: true) + "  "
                         + pad(bytesText(row.compressedBytes), 10, right: true) + "  " + pad(ratio, 6, right: true) + "  " + String(row.slices))
        }
        lines.append("")
        lines.append(pad("file", 16) + "  " + pad("indexed", 10, right: true) + "  " + pad("on disk", 10, right: true))
        for file in files {
            lines.append(pad(file.name, 16) + "  " + pad(bytesText(file.indexed), 10, right: true) + "  "
                         + pad(file.onDisk.map(bytesText) ?? "MISSING", 10, right: true))
        }
        if !extraFiles.isEmpty { lines.append("other files: " + extraFiles.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    /// The same facts as one JSON object.
    public func json() throws -> Data {
        var object: [String: Any] = [
            "step_directory": stepDirectory, "step": step, "world_size": worldSize,
            "bytes": totalBytes, "compressed_bytes": totalCompressedBytes, "compression_ratio": compressionRatio,
            "tensors": tensors.map { ["name": $0.name, "shape": $0.shape, "dtype": $0.dtype, "elements": $0.elements, "bytes": $0.bytes,
                                      "compressed_bytes": $0.compressedBytes, "slices": $0.slices] as [String: Any] },
            "files": files.map { ["name": $0.name, "indexed_bytes": $0.indexed, "bytes_on_disk": $0.onDisk as Any? ?? NSNull()] as [String: Any] },
            "other_files": extraFiles,
        ]
        if let state {
            object["mesh"] = ["dp": state.dataParallelDegree, "zero_stage": state.zeroStage, "tp": 1, "pp": 1]
            object["next_step"] = state.nextStep
            object["consumed_samples"] = state.consumedSamples
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }
}

/// 1.2 MB, 340 kB, 12 B.
func bytesText(_ bytes: Int) -> String {
    let value = Double(bytes)
    if value >= 1e9 { return String(format: "%.2f GB", value / 1e9) }
    if value >= 1e6 { return String(format: "%.2f MB", value / 1e6) }
    if value >= 1e3 { return String(format: "%.1f kB", value / 1e3) }
    return "\(bytes) B"
}
