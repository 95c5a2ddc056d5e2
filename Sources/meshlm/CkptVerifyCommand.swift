import ArgumentParser
import Checkpoint
import Foundation

struct CkptVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every slice of a checkpoint: files present, tensors covered, frames decompress, CRC-32C match.",
        discussion: "Exit status 0 when everything checks; otherwise 1, with one line per problem naming the file and tensor.")

    @Argument(help: "A step directory, a checkpoints directory or a run directory.") var directory: String

    func run() throws {
        try CkptCommand.runTool {
            let reader = try CheckpointReader.locate(directory)
            let problems = reader.verifyAll()
            let slices = reader.index.tensors.reduce(0) { $0 + $1.slices.count }
            guard problems.isEmpty else {
                for problem in problems { FileHandle.standardError.write(Data("meshlm: error: \(problem.description)\n".utf8)) }
                FileHandle.standardError.write(Data("meshlm: error: \(reader.stepDirectory) failed verification: \(problems.count) problem\(problems.count == 1 ? "" : "s")\n".utf8))
                throw ExitCode(1)
            }
            print("verify: \(reader.stepDirectory) OK (step \(reader.step), \(reader.index.tensors.count) tensors, \(slices) slices in \(reader.index.worldSize) files, every checksum matches)")
        }
    }
}
