import Checkpoint
import Foundation
import Model
import Parallel
import Runtime
import Tensors

/// What a pretraining checkpoint records beside the tensors (`metadata.json`).
public struct PretrainCheckpointState: Codable, Sendable, Equatable {
    /// The next step to run: the run resumes here, with AdamW's step count and the data
    /// position (step × global batch samples, DESIGN §4) derived from it.
    public var nextStep: Int
    public var seed: Int
    public var globalBatchSize: Int
    public var consumedSamples: Int
    public var dataParallelDegree: Int
    public var zeroStage: Int
    /// Absent in checkpoints saved before tensor parallelism (they were saved on tp 1).
    public var tensorParallelDegree: Int?
    /// QLoRA (`lora.quantize_base`): the format the layer projections were held in, and the
    /// step directory of the base they were quantized from. Such a checkpoint holds no layer
    /// projection weights: resuming (and merging) reads them from `baseCheckpoint`.
    public var quantizedBase: String?
    public var baseCheckpoint: String?

    enum CodingKeys: String, CodingKey {
        case nextStep = "next_step", seed, globalBatchSize = "global_batch_size", consumedSamples = "consumed_samples"
        case dataParallelDegree = "data_parallel_degree", zeroStage = "zero_stage", tensorParallelDegree = "tensor_parallel_degree"
        case quantizedBase = "quantized_base", baseCheckpoint = "base_checkpoint"
    }
}

extension Trainer {
    /// `RUN/checkpoints`.
    public var checkpointDirectory: String {
        URL(fileURLWithPath: config.run.dir).appendingPathComponent("checkpoints").path
    }

    /// Floats of this rank's checkpoint share (owned parameters and both moments): the staging
    /// buffer's size.
    public var checkpointShareCount: Int {
        DataParallelParameters.StateKind.allCases.reduce(0) { total, kind in
            total + parameters.ownedSlices(kind).reduce(0) { $0 + $1.elements.count }
        }
    }

    /// Stages parameters and AdamW moments (each rank its owned share) into a new writer for
    /// `RUN/checkpoints/step_N`, N the next step to run, and returns it with the trainer state
    /// to commit; collective over the world (rank 0 creates the step directory). `CheckpointSaver`
    /// writes it.
    ///
    /// Copied now, or with `lazily` by the next optimizer step as it overwrites the values (the
    /// returned snapshot, installed in `parameters`; `complete()` it if no step follows) — the
    /// writer may write only once the snapshot is complete.
    ///
    /// Tensors are saved under their global names and shapes whatever the mesh: a tensor-parallel
    /// rank writes its slice as runs of the global tensor (rows; one run per row of a column
    /// slice), and one rank of each replica group writes replicated tensors. With QLoRA the
    /// layer projections, held only as NF4, are not written: the metadata names the base
    /// checkpoint they come from (`PretrainCheckpointState.baseCheckpoint`).
    public func stageCheckpoint(nextStep: Int, staging: CheckpointStaging = CheckpointStaging(),
                                lazily: Bool = false) throws -> (writer: CheckpointWriter, metadata: Data, snapshot: StateSnapshot?) {
        staging.reserve(checkpointShareCount)
        let writer = try CheckpointWriter(directory: checkpointDirectory, step: nextStep, communicator: worldCommunicator,
                                          compressionLevel: Int32(config.checkpoint.zstdLevel), staging: staging)
        writer.backgroundPriority = config.checkpoint.writerPriority
        writer.backgroundNice = Int32(config.checkpoint.writerNice)
        writer.compressionThreads = model.threads.count
        writer.compression = config.checkpoint.compression
        writer.backgroundDutyCycle = config.checkpoint.writerDutyCycle
        // Local runs in staging order: a tensor-parallel slice's runs are contiguous here.
        var deferred: [[(source: UnsafeMutablePointer<Float>, count: Int, offset: Int)]] = []
        let quantized = parallelModel.quantizedTensorNames
        for kind in DataParallelParameters.StateKind.allCases {
            var regions: [(source: UnsafeMutablePointer<Float>, count: Int, offset: Int)] = []
            for slice in parameters.ownedSlices(kind) where countsOnce(slice.parameterIndex) && !quantized.contains(slice.name) {
                guard let global = tensorLayout.globalLayout.entry(named: tensorLayout.localLayout.entries[slice.parameterIndex].name) else { continue }
                for run in tensorLayout.globalRuns(slice.parameterIndex, elements: slice.elements) {
                    let source = slice.pointer + (run.localStart - slice.elements.lowerBound)
                    if lazily {
                        let offset = writer.addDeferred(name: slice.name, globalShape: global.shape, elements: run.global)
                        regions.append((source, run.global.count, offset))
                    } else {
                        writer.add(name: slice.name, globalShape: global.shape, elements: run.global,
                                   values: UnsafeBufferPointer(start: source, count: run.global.count))
                    }
                }
            }
            deferred.append(regions)
        }
        var snapshot: StateSnapshot?
        if lazily {
            // Destinations are taken after every slice is claimed (claiming may move the buffer).
            let regions = deferred.map { kind in
                kind.map { StateSnapshot.Region(source: $0.source, count: $0.count, destination: writer.stagedValues(at: $0.offset)) }
            }
            let lazy = StateSnapshot(parameters: regions[0], firstMoments: regions[1], secondMoments: regions[2])
            parameters.snapshot = lazy
            snapshot = lazy
        }
        let state = PretrainCheckpointState(nextStep: nextStep, seed: config.train.seed, globalBatchSize: config.train.globalBatchSize,
                                            consumedSamples: nextStep * config.train.globalBatchSize,
                                            dataParallelDegree: communicator.size, zeroStage: config.parallel.zeroStage,
                                            tensorParallelDegree: tensorLayout.degree,
                                            quantizedBase: parallelModel.quantizedBase?.format.rawValue,
                                            baseCheckpoint: parallelModel.quantizedBase == nil ? nil : baseCheckpoint)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (writer, try encoder.encode(state), snapshot)
    }

    /// Saves a checkpoint synchronously (stage, write, commit); collective.
    @discardableResult
    public func saveCheckpoint(nextStep: Int, extras: CheckpointExtras = CheckpointExtras()) throws -> String {
        let (writer, metadata, _) = try stageCheckpoint(nextStep: nextStep)
        return try writer.commit(metadata: metadata, extraFiles: extras.files, keep: config.checkpoint.keep)
    }

    /// Loads the newest committed checkpoint of the run, if any, whatever the data-parallel and
    /// tensor/pipeline-parallel degrees and ZeRO stage it was saved with, and returns the step to
    /// continue from. Checkpoints that are not committed, or fail verification (a flipped byte, a
    /// truncated file), are skipped with a warning and the previous committed one is used.
    public func resumeFromLatest() throws -> Int? {
        try resume(from: checkpointDirectory)
    }

    /// Resumes from `path`: a step directory (`…/step_N`), or a checkpoints directory whose
    /// newest loadable checkpoint is used as in `resumeFromLatest`. nil when a checkpoints
    /// directory holds none.
    public func resume(from given: String) throws -> Int? {
        let path = CheckpointReader.resolve(given)
        let reader: CheckpointReader
        if CheckpointFiles.step(ofDirectoryName: (path as NSString).lastPathComponent) != nil {
            reader = try CheckpointReader(stepDirectory: path)
            try reader.verify()
        } else {
            let latest = CheckpointReader.latest(in: path, verifying: true)
            for warning in latest.warnings { log.warning(warning) }
            guard let found = latest.reader else { return nil }
            reader = found
        }
        let state: PretrainCheckpointState
        do {
            state = try JSONDecoder().decode(PretrainCheckpointState.self, from: reader.metadata)
        } catch {
            throw JobError("\(reader.stepDirectory)/\(CheckpointFiles.metadataName) holds no pretraining state (\(describe(error))); a checkpoint made by import-hf or reshard without one starts a run with --init-from")
        }
        guard state.globalBatchSize == config.train.globalBatchSize, state.seed == config.train.seed else {
            throw JobError("\(reader.stepDirectory): saved with train.global_batch_size \(state.globalBatchSize) and train.seed \(state.seed); this run has \(config.train.globalBatchSize) and \(config.train.seed) (the data position would not carry over)")
        }
        var absent: Set<String> = []
        if let base = state.baseCheckpoint {
            // A QLoRA checkpoint: the layer projections come from the base it started from.
            precondition(parallelModel.quantizedBase == nil, "resume after the base was quantized")
            baseCheckpoint = try parallelModel.loadParameters(from: base, option: "\(reader.stepDirectory)'s base_checkpoint", log: log)
            // What that run held quantized (the layer projections, and perhaps the embeddings).
            let saved = Set(reader.tensorNames)
            absent = Set(layout.entries.filter { QuantizedBase.quantizes($0, embeddings: true) && !saved.contains($0.name) }.map(\.name))
        } else {
            baseCheckpoint = reader.stepDirectory
        }
        try parallelModel.load(reader, kinds: DataParallelParameters.StateKind.allCases, skipping: absent)
        loadedCheckpoint = reader.stepDirectory
        quantizeBase()
        return state.nextStep
    }

    /// QLoRA: quantizes the loaded base and logs what it holds now.
    private func quantizeBase() {
        parallelModel.quantizeBase(threads: model.threads)
        guard let base = parallelModel.quantizedBase else { return }
        log.info(String(format: "QLoRA: %d matrices (%.1f M weights) held as %@: %.1f MB instead of %.1f MB of f32 (%.1f MB of arena pages released)",
                        base.matrixCount, Double(base.elementCount) / 1e6, base.format.rawValue, Double(base.byteCount) / 1e6,
                        Double(base.elementCount * 4) / 1e6, Double(parallelModel.releasedBaseBytes) / 1e6))
    }

    /// Starts from the parameters (only) of the checkpoint at `path` (a step directory or a
    /// checkpoints directory's newest), e.g. one `meshlm ckpt import-hf` made: the optimizer
    /// state and the data position start fresh at step 0.
    /// With QLoRA the base is then quantized (`lora.quantize_base`).
    public func initialize(from path: String) throws {
        precondition(parallelModel.quantizedBase == nil, "initialize after the base was quantized")
        let step = try parallelModel.loadParameters(from: path, option: "--init-from", log: log)
        baseCheckpoint = URL(fileURLWithPath: step).standardizedFileURL.path
        loadedCheckpoint = step
        quantizeBase()
    }
}

extension ParallelModel {
    /// Loads the parameters (only) of the checkpoint at `path` (a step directory or a
    /// checkpoints directory's newest), whatever mesh saved it; `option` names where the path
    /// came from in errors. A scalar head (`score.weight`) the checkpoint lacks — a reward or
    /// value model started from a language model — and LoRA adapters it lacks (fine-tuning a base
    /// model) keep their initialization, and the log says so. Returns the step directory read.
    @discardableResult
    public func loadParameters(from path: String, option: String, log: Log) throws -> String {
        let reader: CheckpointReader
        do { reader = try CheckpointReader.locate(path, verifying: true, warn: { log.warning($0) }) } catch {
            throw JobError("\(option): \(error.description)")
        }
        let saved = Set(reader.tensorNames)
        var initialized: Set<String> = []
        for local in layout.entries {
            guard let entry = tensorLayout.globalLayout.entry(named: local.name) else { continue }
            if (entry.role == .score || entry.block.isAdapter) && !saved.contains(entry.name) {
                initialized.insert(entry.name)
                continue
            }
            let shape = try reader.shape(of: entry.name)
            guard shape == entry.shape else {
                throw JobError("\(option) \(reader.stepDirectory): tensor \(entry.name) has shape \(shape), the model config gives \(entry.shape) (check the model section against its model_config.json)")
            }
        }
        if !initialized.isEmpty {
            let what = initialized.count > 3 ? "\(initialized.count) tensors (\(initialized.sorted().prefix(2).joined(separator: ", ")), …)"
                : initialized.sorted().joined(separator: ", ")
            log.info("\(option) \(reader.stepDirectory) has no \(what): they start from their initialization (a new scalar head or new LoRA adapters)")
        }
        try load(reader, kinds: [.parameters], skipping: initialized)
        try startMagnitudes(from: reader, among: initialized)
        return reader.stepDirectory
    }

    /// DoRA's magnitudes that the checkpoint lacks start at the row norms of the base W just
    /// loaded (PEFT's initialization: B is zero, so ‖W + s·B·A‖ = ‖W‖), not at those of the
    /// random W they were initialized from. Each rank reads the whole W and keeps its slice.
    private func startMagnitudes(from reader: CheckpointReader, among initialized: Set<String>) throws {
        for slice in parameters.neededSlices(.parameters)
        where initialized.contains(slice.name) && slice.name.hasSuffix(LoRAConfig.magnitudeSuffix) {
            let weightName = String(slice.name.dropLast(LoRAConfig.magnitudeSuffix.count)) + ".weight"
            let shape = try reader.shape(of: weightName)
            let norms = WeightDecomposedAdapter.rowNorms(try reader.read(name: weightName), rowCount: shape[0],
                                                         columnCount: shape.dropFirst().reduce(1, *))
            for run in tensorLayout.globalRuns(slice.parameterIndex, elements: slice.elements) {
                for (offset, element) in run.global.enumerated() {
                    slice.pointer[run.localStart - slice.elements.lowerBound + offset] = norms[element]
                }
            }
        }
    }

    /// Reads the slices of `kinds` this rank holds from `reader`, but those of the tensors in
    /// `skipping`.
    func load(_ reader: CheckpointReader, kinds: [DataParallelParameters.StateKind], skipping: Set<String> = []) throws {
        for kind in kinds {
            for slice in parameters.neededSlices(kind) where !skipping.contains(slice.name) {
                let runs = tensorLayout.globalRuns(slice.parameterIndex, elements: slice.elements).map { run in
                    ElementRun(elements: run.global, destination: slice.pointer + (run.localStart - slice.elements.lowerBound))
                }
                try reader.read(name: slice.name, runs: runs)
            }
        }
    }
}
