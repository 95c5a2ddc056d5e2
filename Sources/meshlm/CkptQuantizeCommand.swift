import ArgumentParser
import Checkpoint
import Foundation
import Model
import Runtime
import Serving
import Tensors

extension QuantizedFormat: ExpressibleByArgument {}

/// The language-model head's format in a quantized checkpoint.
enum HeadFormat: String, ExpressibleByArgument, CaseIterable {
    case q8_0, q4_0, f32

    var format: QuantizedFormat? { QuantizedFormat(rawValue: rawValue) }
}

struct CkptQuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a quantized checkpoint for inference: projections in q8_0 or q4_0 blocks of 32 weights.",
        discussion: """
            The result is OUTPUT/step_N (N: the source's step) with OUTPUT/latest, committed like any \
            checkpoint (ckpt verify and inspect read it): q/k/v/o and gate/up/down of every layer in \
            --format, the language-model head in --head (q8_0 by default, as llama.cpp keeps the head \
            wider), embeddings and norms in f32. A LoRA or QLoRA run's adapters are merged first. \
            generate, serve and bench decode load it; training and eval refuse it. Docs: \
            docs/serving.md, "Quantization".
            """)

    @Option(help: "A step directory, checkpoints directory or run directory holding f32 weights.") var checkpoint: String
    @Option(help: "The checkpoints directory to write.") var output: String
    @Option(help: "Block format of the layers' projections: q8_0 (int8, one f16 scale per 32) or q4_0 (4-bit, one f16 scale per 32).")
    var format: QuantizedFormat
    @Option(help: "Format of the untied language-model head: q8_0, q4_0 or f32.") var head: HeadFormat = .q8_0
    @Option(name: .customLong("zstd-level"), parsing: .unconditional, help: "zstd level of the new frames (1-19).") var zstdLevel = 1

    func validate() throws {
        guard (1...19).contains(zstdLevel) else { throw ValidationError("--zstd-level \(zstdLevel) must be 1...19") }
    }

    func run() throws {
        try CkptCommand.runTool {
            let report = try CheckpointQuantization.quantize(checkpoint: checkpoint, output: output, format: format,
                                                             head: head.format, compressionLevel: Int32(zstdLevel))
            print("quantize: wrote \(report.stepDirectory): \(report.quantized - (report.head == nil ? 0 : 1)) projections in \(format.rawValue)"
                  + (report.head.map { ", the head in \($0.rawValue)" } ?? "") + ", \(report.tensors - report.quantized) in f32; "
                  + "\(bytesText(report.bytes)) of weights (f32: \(bytesText(report.f32Bytes)))")
        }
    }

    private func bytesText(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
}
