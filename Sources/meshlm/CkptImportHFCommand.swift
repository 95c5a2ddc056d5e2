import ArgumentParser
import Checkpoint
import Foundation
import Training

struct CkptImportHFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Turn a Hugging Face Llama directory (config.json + safetensors, single or sharded, f32/bf16/f16) into a MeshLM checkpoint.",
        discussion: """
            The result is OUTPUT/step_00000000 (parameters in f32, model_config.json, the tokenizer files) \
            with OUTPUT/latest. Train from it with `meshlm pretrain --init-from OUTPUT`; serve it as any checkpoint.
            """)

    @Argument(help: "The Hugging Face model directory.") var directory: String
    @Option(help: "The checkpoints directory to write.") var output: String

    func run() throws {
        try CkptCommand.runTool {
            let report = try HuggingFaceImport.importDirectory(directory, output: output)
            if !report.ignored.isEmpty {
                FileHandle.standardError.write(Data("meshlm: warning: tensors the model does not use were not imported: \(report.ignored.joined(separator: ", "))\n".utf8))
            }
            print("import-hf: wrote \(report.stepDirectory): \(report.tensors) tensors from \(report.dtypes.joined(separator: "/")), \(report.model.parameterCount) parameters")
        }
    }
}
