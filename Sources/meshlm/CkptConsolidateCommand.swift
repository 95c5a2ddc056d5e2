import ArgumentParser
import Checkpoint
import Foundation
import Training

struct CkptConsolidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consolidate",
        abstract: "Write every tensor of a checkpoint into one safetensors file (f32, the checkpoint's names).")

    @Argument(help: "A step directory, a checkpoints directory or a run directory.") var directory: String
    @Option(help: "The .safetensors file to write.") var output: String
    @Flag(name: .customLong("optimizer"), help: "Include the AdamW moments (optimizer.exp_avg.*, optimizer.exp_avg_sq.*).")
    var includeOptimizer = false

    func run() throws {
        try CkptCommand.runTool {
            let reader = try CheckpointReader.locate(directory)
            let count = try HuggingFaceExport.consolidate(reader, to: output, includeOptimizer: includeOptimizer)
            print("consolidate: wrote \(count) tensors of \(reader.stepDirectory) to \(output)")
        }
    }
}
