import ArgumentParser
import Checkpoint
import Foundation
import Tensors
import Model
import Training

extension QLoRAMergeBase: ExpressibleByArgument {}

struct CkptMergeLoRACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-lora",
        abstract: "Merge a LoRA checkpoint's adapters into its weights (W + scaling·B·A, f32): a plain checkpoint.",
        discussion: """
            The result is OUTPUT/step_N (N: the source's step) with OUTPUT/latest: every tensor of the \
            base model, the adapted projections merged, modules_to_save tensors as trained; no adapter \
            tensors, no adapter_config.json, no lora: section in run_config.json. It serves, evaluates, \
            exports and starts runs (--init-from) as any base model. Docs: docs/checkpoints.md.
            """)

    @Argument(help: "A LoRA run's step directory, checkpoints directory or run directory.") var directory: String
    @Option(help: "The checkpoints directory to write.") var output: String
    @Option(name: .customLong("zstd-level"), parsing: .unconditional, help: "zstd level of the new frames.") var zstdLevel = 1
    @Option(name: .customLong("qlora-base"), help: "A QLoRA run's checkpoint: merge into dequantized (dequant(NF4(W)), what the adapters were trained against) or original (the base checkpoint's f32 W).")
    var qloraBase: QLoRAMergeBase = .dequantized

    func run() throws {
        try CkptCommand.runTool {
            // The merge's sgemm runs on this thread, as every MeshLM kernel does (MachineSetup).
            BLASLibrary.threadCount = 1
            let reader = try CheckpointReader.locate(directory)
            let report = try LoRAMerge.merge(reader, output: output, compressionLevel: Int32(zstdLevel), qloraBase: qloraBase)
            let lora = report.lora
            print("merge-lora: wrote \(report.stepDirectory): \(report.tensors) tensors, \(report.merged) projections merged "
                  + "(r \(lora.rank), scaling \(lora.scaling), \(lora.targets.map(\.moduleName).joined(separator: ", ")))"
                  + (lora.modulesToSave.isEmpty ? "" : ", \(lora.modulesToSave.joined(separator: ", ")) as trained")
                  + (report.quantizedBase.map { "; QLoRA: \($0)" } ?? ""))
        }
    }
}
