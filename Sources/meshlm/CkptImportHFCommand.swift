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
            with OUTPUT/latest. Train from it with `meshlm pretrain --init-from OUTPUT`; serve it as any checkpoint. \
            With --adapter DIR (a PEFT LoRA adapter: adapter_config.json + adapter_model.safetensors) the \
            checkpoint also holds the adapters and their adapter_config.json, as a MeshLM LoRA run saves \
            them: `meshlm sft --init-from OUTPUT` trains them further; generate, serve and eval apply them. \
            What MeshLM's LoRA cannot represent (DoRA, biases, per-layer ranks, a subset of layers, …) is \
            refused with the key. Docs: docs/sft.md.
            """)

    @Argument(help: "The Hugging Face model directory.") var directory: String
    @Option(help: "The checkpoints directory to write.") var output: String
    @Option(help: "A PEFT LoRA adapter directory to import with the model.") var adapter: String?

    func run() throws {
        try CkptCommand.runTool {
            let report = try HuggingFaceImport.importDirectory(directory, output: output, adapter: adapter)
            for warning in report.warnings { FileHandle.standardError.write(Data("meshlm: warning: \(warning)\n".utf8)) }
            if !report.ignored.isEmpty {
                FileHandle.standardError.write(Data("meshlm: warning: tensors the model does not use were not imported: \(report.ignored.joined(separator: ", "))\n".utf8))
            }
            let adapted = report.lora.map { lora in
                ", with a LoRA adapter (r \(lora.rank), lora_alpha \(lora.alpha), \(lora.targets.map(\.moduleName).joined(separator: ", "))"
                    + (lora.modulesToSave.isEmpty ? "" : "; modules_to_save \(lora.modulesToSave.joined(separator: ", "))") + ")"
            } ?? ""
            print("import-hf: wrote \(report.stepDirectory): \(report.tensors) tensors from \(report.dtypes.joined(separator: "/")), \(report.model.parameterCount) parameters\(adapted)")
        }
    }
}
