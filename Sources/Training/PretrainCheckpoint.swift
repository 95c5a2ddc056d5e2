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

    enum CodingKeys: String, CodingKey {
        case nextStep = "next_step", seed, globalBatchSize = "global_batch_size", consumedSamples = "consumed_samples"
        case dataParallelDegree = "data_parallel_degree", zeroStage = "zero_stage"
    }
}

extension Pretrainer {
    /// `RUN/checkpoints`.
    public var checkpointDirectory: String {
        URL(fileURLWithPath: config.run.dir).appendingPathComponent("checkpoints").path
    }

    /// Saves parameters and AdamW moments (each rank its owned share) and the trainer state as
    /// `RUN/checkpoints/step_N` where N is the next step to run; collective.
    @discardableResult
    public func saveCheckpoint(nextStep: Int) throws -> String {
        let writer = try CheckpointWriter(directory: checkpointDirectory, step: nextStep, communicator: communicator)
        for kind in DataParallelParameters.StateKind.allCases {
            for slice in parameters.ownedSlices(kind) {
                writer.add(name: slice.name, globalShape: slice.shape, elements: slice.elements,
                           values: UnsafeBufferPointer(start: slice.pointer, count: slice.elements.count))
            }
        }
        let state = PretrainCheckpointState(nextStep: nextStep, seed: config.train.seed, globalBatchSize: config.train.globalBatchSize,
                                            consumedSamples: nextStep * config.train.globalBatchSize,
                                            dataParallelDegree: communicator.size, zeroStage: config.parallel.zeroStage)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try writer.commit(metadata: try encoder.encode(state), keep: config.checkpoint.keep)
    }

    /// Loads the newest committed checkpoint of the run, if any, whatever the data-parallel
    /// degree and ZeRO stage it was saved with, and returns the step to continue from.
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
                try reader.read(name: slice.name, elements: slice.elements,
                                into: UnsafeMutableBufferPointer(start: slice.pointer, count: slice.elements.count))
            }
        }
        return state.nextStep
    }
}
