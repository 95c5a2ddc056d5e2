import Checkpoint
import Foundation
import Parallel
import Runtime

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

    enum CodingKeys: String, CodingKey {
        case nextStep = "next_step", seed, globalBatchSize = "global_batch_size", consumedSamples = "consumed_samples"
        case dataParallelDegree = "data_parallel_degree", zeroStage = "zero_stage", tensorParallelDegree = "tensor_parallel_degree"
    }
}

extension Pretrainer {
    /// `RUN/checkpoints`.
    public var checkpointDirectory: String {
        URL(fileURLWithPath: config.run.dir).appendingPathComponent("checkpoints").path
    }

    /// Saves parameters and AdamW moments (each rank its owned share) and the trainer state as
    /// `RUN/checkpoints/step_N` where N is the next step to run; collective over the world.
    ///
    /// Tensors are saved under their global names and shapes whatever the mesh: a tensor-parallel
    /// rank writes its slice as runs of the global tensor (rows; one run per row of a column
    /// slice), and one rank of each replica group writes replicated tensors.
    @discardableResult
    public func saveCheckpoint(nextStep: Int) throws -> String {
        let writer = try CheckpointWriter(directory: checkpointDirectory, step: nextStep, communicator: worldCommunicator)
        for kind in DataParallelParameters.StateKind.allCases {
            for slice in parameters.ownedSlices(kind) where tensorLayout.counts(slice.parameterIndex) {
                guard let global = tensorLayout.globalLayout.entry(named: tensorLayout.localLayout.entries[slice.parameterIndex].name) else { continue }
                for run in tensorLayout.globalRuns(slice.parameterIndex, elements: slice.elements) {
                    writer.add(name: slice.name, globalShape: global.shape, elements: run.global,
                               values: UnsafeBufferPointer(start: slice.pointer + (run.localStart - slice.elements.lowerBound),
                                                           count: run.global.count))
                }
            }
        }
        let state = PretrainCheckpointState(nextStep: nextStep, seed: config.train.seed, globalBatchSize: config.train.globalBatchSize,
                                            consumedSamples: nextStep * config.train.globalBatchSize,
                                            dataParallelDegree: communicator.size, zeroStage: config.parallel.zeroStage,
                                            tensorParallelDegree: tensorLayout.degree)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try writer.commit(metadata: try encoder.encode(state), keep: config.checkpoint.keep)
    }

    /// Loads the newest committed checkpoint of the run, if any, whatever the data-parallel and
    /// tensor-parallel degrees and ZeRO stage it was saved with, and returns the step to continue from.
    /// Checkpoints that are not committed (or fail to load) are skipped with a warning.
    public func resumeFromLatest() throws -> Int? {
        let latest = CheckpointReader.latest(in: checkpointDirectory)
        for warning in latest.warnings { log.warning(warning) }
        guard let reader = latest.reader else { return nil }
        let state = try JSONDecoder().decode(PretrainCheckpointState.self, from: reader.metadata)
        guard state.globalBatchSize == config.train.globalBatchSize, state.seed == config.train.seed else {
            throw JobError("\(reader.stepDirectory): saved with train.global_batch_size \(state.globalBatchSize) and train.seed \(state.seed); this run has \(config.train.globalBatchSize) and \(config.train.seed) (the data position would not carry over)")
        }
        for kind in DataParallelParameters.StateKind.allCases {
            for slice in parameters.neededSlices(kind) {
                let runs = tensorLayout.globalRuns(slice.parameterIndex, elements: slice.elements).map { run in
                    ElementRun(elements: run.global, destination: slice.pointer + (run.localStart - slice.elements.lowerBound))
                }
                try reader.read(name: slice.name, runs: runs)
            }
        }
        return state.nextStep
    }
}
