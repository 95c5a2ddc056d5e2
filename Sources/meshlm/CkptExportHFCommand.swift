import ArgumentParser
import Checkpoint
import Foundation
import Training

struct CkptExportHFCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-hf",
        abstract: "Write a checkpoint as a Hugging Face Llama directory (safetensors, config.json, generation_config.json, tokenizer).",
        discussion: """
            A LoRA checkpoint's adapter goes to OUTPUT/adapter in PEFT's layout (adapter_config.json, \
            adapter_model.safetensors, keys base_model.model.<name>), beside the base in OUTPUT: \
            PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(OUTPUT), OUTPUT + "/adapter") \
            loads it. --adapter-only writes the adapter alone into OUTPUT. Docs: docs/sft.md.
            """)

    @Argument(help: "A step directory, a checkpoints directory or a run directory.") var directory: String
    @Option(help: "The directory to write.") var output: String
    @Option(help: "Tensor dtype: f32, bf16 or f16.") var dtype = "f32"
    @Option(name: .customLong("max-shard-size"), help: "Split model.safetensors above this size (bytes, or with kB/MB/GB; default 5GB).")
    var maxShardSize = "5GB"
    @Option(name: .customLong("model-config"), help: "The model's config.json, for checkpoints without model_config.json.") var modelConfig: String?
    @Flag(name: .customLong("adapter-only"), help: "Write only a LoRA checkpoint's adapter (PEFT's layout) into OUTPUT.") var adapterOnly = false

    func run() throws {
        try CkptCommand.runTool {
            guard let type = ["f32": SafetensorsDType.f32, "bf16": .bf16, "f16": .f16][dtype.lowercased()] else {
                throw ValidationError("--dtype \(dtype): use f32, bf16 or f16")
            }
            let limit = try Self.parseSize(maxShardSize)
            let reader = try CheckpointReader.locate(directory)
            let report = try HuggingFaceExport.export(reader, to: output, dtype: type, maxShardBytes: limit, modelConfigOverride: modelConfig,
                                                      adapterOnly: adapterOnly)
            for warning in report.warnings { FileHandle.standardError.write(Data("meshlm: warning: \(warning)\n".utf8)) }
            print("export-hf: wrote \(report.tensors) tensors (\(report.bytes) bytes, \(dtype)) of \(reader.stepDirectory) to \(output): \(report.files.joined(separator: ", "))")
        }
    }

    /// `123`, `10kB`, `2MB`, `5GB` (decimal, as transformers' max_shard_size).
    static func parseSize(_ text: String) throws -> Int {
        let units: [(String, Int)] = [("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1000), ("B", 1)]
        let upper = text.uppercased()
        for (suffix, scale) in units where upper.hasSuffix(suffix) {
            if let value = Double(upper.dropLast(suffix.count)), value > 0 { return Int(value * Double(scale)) }
        }
        if let value = Int(text), value > 0 { return value }
        throw ValidationError("--max-shard-size \(text): give a positive size such as 5GB, 200MB or 1000000")
    }
}
