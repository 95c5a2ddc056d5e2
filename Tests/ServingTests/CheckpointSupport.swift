import Checkpoint
import Foundation
import Model
import Runtime
import Serving

/// Writes `weights` as a committed checkpoint `directory/step_00000001` with the model config
/// beside it (what a pretraining run or `ckpt import-hf` leaves), and returns the step directory.
/// The offline writer needs no MPI: MPI started inside the test process would break every
/// later test that launches `mpirun`.
func writeCheckpoint(_ weights: InferenceWeights, directory: String) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let declared = Dictionary(uniqueKeysWithValues: weights.layout.entries.map { ($0.name, $0.shape) })
    return try CheckpointWriter.writeOffline(directory: directory, step: 1, ranks: 1, declared: declared, metadata: Data("{}".utf8),
                                             extraFiles: ["model_config.json": try encoder.encode(weights.config)]) { _ in
        weights.layout.entries.map { entry in
            CheckpointSliceValues(name: entry.name, shape: entry.shape, elements: 0..<entry.count,
                                  values: Array(UnsafeBufferPointer(start: weights.parameters.pointer + entry.offset, count: entry.count)))
        }
    }
}

func temporaryDirectory(_ name: String = #function) -> String {
    let clean = name.filter { $0.isLetter || $0.isNumber }
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-serving-\(clean)-\(UUID().uuidString.prefix(8))").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
