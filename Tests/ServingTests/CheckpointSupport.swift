import Checkpoint
import Foundation
import Model
import Runtime
import Serving

/// MPI once per test process (a singleton world of one rank), for `CheckpointWriter`.
nonisolated(unsafe) let testWorld: Communicator? = try? MPIEnvironment.initialize()

/// Writes `weights` as a committed checkpoint `directory/step_00000001` with the model config
/// beside it (what a pretraining run or `ckpt import-hf` leaves), and returns the step directory.
func writeCheckpoint(_ weights: InferenceWeights, directory: String) throws -> String {
    guard let world = testWorld else { throw ServingError(.checkpoint, "MPI did not start in the test process") }
    let writer = try CheckpointWriter(directory: directory, step: 1, communicator: world)
    for entry in weights.layout.entries {
        writer.add(name: entry.name, globalShape: entry.shape, elements: 0..<entry.count,
                   values: UnsafeBufferPointer(start: weights.parameters.pointer + entry.offset, count: entry.count))
    }
    writer.writeShardInBackground()
    let stepDirectory = try writer.commit(metadata: Data("{}".utf8), keep: 0)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(weights.config).write(to: URL(fileURLWithPath: stepDirectory + "/model_config.json"))
    return stepDirectory
}

func temporaryDirectory(_ name: String = #function) -> String {
    let clean = name.filter { $0.isLetter || $0.isNumber }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-serving-\(clean)-\(UUID().uuidString.prefix(8))").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
