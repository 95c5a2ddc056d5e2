import ArgumentParser
import Checkpoint
import Foundation
import Training

struct CkptInspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's tensors (shape, dtype, bytes, compression), shard files, mesh and step.")

    @Argument(help: "A step directory, a checkpoints directory or a run directory.") var directory: String
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() throws {
        try CkptCommand.runTool {
            let inspection = CheckpointInspection(try CheckpointReader.locate(directory))
            if json {
                print(String(decoding: try inspection.json(), as: UTF8.self))
            } else {
                print(inspection.table())
            }
        }
    }
}
