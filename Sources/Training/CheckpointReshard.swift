import Checkpoint
import Foundation
import Model
import Parallel
import Runtime

/// A mesh a checkpoint can be written for: the degrees that decide which rank saves which
/// elements of which tensor.
public struct CheckpointMesh: Sendable, Equatable, CustomStringConvertible {
    public var dataParallel: Int
    public var zeroStage: Int
    public var tensorParallel: Int
    public var pipelineParallel: Int

    public init(dataParallel: Int, zeroStage: Int = 1, tensorParallel: Int = 1, pipelineParallel: Int = 1) {
        self.dataParallel = dataParallel
        self.zeroStage = zeroStage
        self.tensorParallel = tensorParallel
        self.pipelineParallel = pipelineParallel
    }

    public var worldSize: Int { dataParallel * tensorParallel * pipelineParallel }
    public var description: String { "dp \(dataParallel), ZeRO-\(zeroStage), tp \(tensorParallel), pp \(pipelineParallel)" }

    /// Checks the degrees, and with a model that the mesh can split it (the messages of
    /// `meshlm pretrain`, naming both numbers).
    public func validate(model: LlamaConfig? = nil) throws(CheckpointError) {
        guard dataParallel >= 1 else { throw CheckpointError(.badIndex, "--dp \(dataParallel): must be at least 1") }
        guard (0...3).contains(zeroStage) else { throw CheckpointError(.badIndex, "--zero \(zeroStage): must be 0, 1, 2 or 3") }
        guard tensorParallel >= 1 else { throw CheckpointError(.badIndex, "--tp \(tensorParallel): must be at least 1") }
        guard pipelineParallel >= 1 else { throw CheckpointError(.badIndex, "--pp \(pipelineParallel): must be at least 1") }
        guard let model else { return }
        do {
            let dims = try ParallelDims(worldSize: worldSize, pipelineDegree: pipelineParallel, dataDegree: dataParallel,
                                        contextDegree: 1, tensorDegree: tensorParallel, expertDegree: 1)
            try ModelSplit.validate(model, on: dims)
        } catch {
            throw CheckpointError(.badIndex, "cannot write for \(self): \(error)")
        }
    }

    /// The elements of every parameter that rank `rank` of this mesh saves (the same split for
    /// parameters and both AdamW moments), as `Trainer.stageCheckpoint` saves them: the rank's
    /// pipeline stage and tensor slice of each tensor (runs of the global tensor), its ZeRO shard
    /// of those, and replicated tensors once. Ranks are in mesh order (tp fastest, then dp, then pp).
    public func ownedElements(model: LlamaConfig, sequenceLength: Int, rank: Int) -> [(entry: ParameterLayout.Entry, elements: Range<Int>)] {
        let tensorRank = rank % tensorParallel
        let dataRank = (rank / tensorParallel) % dataParallel
        let stage = rank / (tensorParallel * dataParallel)
        let parts = ModelSplit.parts(model, sequenceLength: sequenceLength, stage: stage, stageCount: pipelineParallel)
        let tensor = TensorParallelLayout(config: model, degree: tensorParallel, rank: tensorRank, parts: parts)
        let layout = tensor.localLayout
        let shards = ShardLayout(layout: layout, degree: dataParallel, rank: dataRank)
        var result: [(ParameterLayout.Entry, Range<Int>)] = []
        for block in shards.blocks {
            let owned = shards.ownedRange(of: block, rank: dataRank)
            for (index, entry) in layout.entries.enumerated() where entry.block == block.block && tensor.counts(index) {
                let start = entry.offset - block.range.lowerBound
                let lower = max(start, owned.lowerBound), upper = min(start + entry.count, owned.upperBound)
                guard lower < upper, let global = tensor.globalLayout.entry(named: entry.name) else { continue }
                for run in tensor.globalRuns(index, elements: (lower - start)..<(upper - start)) { result.append((global, run.global)) }
            }
        }
        return result
    }
}

/// `meshlm ckpt reshard`: rewrites a checkpoint as another mesh would have saved it.
public enum CheckpointReshard {
    /// The model config of a checkpoint: its `model_config.json`, or `override` (a config.json
    /// path) for checkpoints saved before that file existed.
    public static func modelConfig(of reader: CheckpointReader, override: String? = nil) throws -> LlamaConfig {
        if let override {
            guard let data = FileManager.default.contents(atPath: override) else { throw CheckpointError(.missingFile, "cannot read --model-config \(override)") }
            return try HuggingFaceConfig.decode(data, file: override)
        }
        let path = reader.stepDirectory + "/" + CheckpointExtras.modelConfigName
        guard let data = reader.file(named: CheckpointExtras.modelConfigName) else {
            throw CheckpointError(.missingFile, "\(path) is missing (checkpoints saved before it existed): pass the model's config with --model-config FILE")
        }
        return try HuggingFaceConfig.decode(data, file: path)
    }

    /// Writes `reader`'s checkpoint to `output` (a checkpoints directory: `output/step_N`, and
    /// `output/latest`) as `mesh` would save it; tensors not in the model's layout (none today)
    /// are refused. Returns the new step directory.
    @discardableResult
    public static func reshard(_ reader: CheckpointReader, to mesh: CheckpointMesh, output: String, model: LlamaConfig,
                               compressionLevel: Int32 = 1) throws -> String {
        try mesh.validate(model: model)
        let layout = ParameterLayout(config: model)
        let sequenceLength = runSequenceLength(reader) ?? model.maxPositionEmbeddings
        let kinds = [("", true), ("optimizer.exp_avg.", false), ("optimizer.exp_avg_sq.", false)]
        let present = Set(reader.tensorNames)
        var declared: [String: [Int]] = [:]
        var expected: Set<String> = []
        for (prefix, required) in kinds {
            for entry in layout.entries {
                let name = prefix + entry.name
                guard present.contains(name) else {
                    if required { throw CheckpointError(.unknownTensor, "\(reader.stepDirectory) has no tensor \(name), which the model config requires") }
                    continue
                }
                let shape = try reader.shape(of: name)
                guard shape == entry.shape else {
                    throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(name) has shape \(shape); the model config gives \(entry.shape)")
                }
                declared[name] = shape
                expected.insert(name)
            }
        }
        if let stray = present.subtracting(expected).sorted().first {
            throw CheckpointError(.badIndex, "\(reader.stepDirectory): tensor \(stray) is not part of the model's layout; reshard knows only parameters and AdamW moments")
        }
        var metadata = reader.metadata
        if var object = (try? JSONSerialization.jsonObject(with: reader.metadata)) as? [String: Any],
           object["data_parallel_degree"] != nil {
            object["data_parallel_degree"] = mesh.dataParallel
            object["zero_stage"] = mesh.zeroStage
            object["tensor_parallel_degree"] = mesh.tensorParallel
            metadata = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        }
        var extras: [String: Data] = [:]
        let skipped: Set<String> = [CheckpointFiles.indexName, CheckpointFiles.metadataName, CheckpointFiles.commitMarkerName]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: reader.stepDirectory)) ?? []
        where !skipped.contains(name) && !name.hasPrefix("rank_") {
            extras[name] = reader.file(named: name)
        }
        return try CheckpointWriter.writeOffline(directory: output, step: reader.step, ranks: mesh.worldSize, declared: declared,
                                                 metadata: metadata, extraFiles: extras, compressionLevel: compressionLevel) { rank in
            var slices: [CheckpointSliceValues] = []
            let owned = mesh.ownedElements(model: model, sequenceLength: sequenceLength, rank: rank)
            for (prefix, _) in kinds {
                for (entry, elements) in owned where declared[prefix + entry.name] != nil {
                    var values = [Float](repeating: 0, count: elements.count)
                    try values.withUnsafeMutableBufferPointer { buffer in try reader.read(name: prefix + entry.name, elements: elements, into: buffer) }
                    slices.append(CheckpointSliceValues(name: prefix + entry.name, shape: entry.shape, elements: elements, values: values))
                }
            }
            return slices
        }
    }

    /// `train.seq_len` of the run that saved the checkpoint (its `run_config.json`), which decides
    /// how its pipeline stages split the layers.
    static func runSequenceLength(_ reader: CheckpointReader) -> Int? {
        guard let data = reader.file(named: "run_config.json"),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let train = object["train"] as? [String: Any] else { return nil }
        return (train["seq_len"] as? Int) ?? (train["seqLen"] as? Int)
    }
}
