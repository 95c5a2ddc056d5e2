import ArgumentParser
import Checkpoint
import DataPipeline
import Foundation
import Runtime
import Tensors
import Training

/// `meshlm eval --checkpoint DIR --tokens FILE`: one process, no MPI.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Next-token loss of a checkpoint's model on a token file; prints one JSON line with \"loss\".",
        discussion: """
            The tokens (a .npy, a headerless .bin of --dtype ids, or a shard directory) are read as one \
            document, at most --max-tokens of them. --logits writes the [T, V] logits as little-endian \
            f32 for comparison with another implementation (tools/check-hf-roundtrip.py).
            """)

    @Option(help: "A step directory or a checkpoints directory.") var checkpoint: String
    @Option(help: "The token file.") var tokens: String
    @Option(help: "Id type of a headerless .bin: uint16, uint32, int32, int64.") var dtype = "uint16"
    @Option(name: .customLong("max-tokens"), help: "Use at most this many tokens (default: max_position_embeddings).") var maxTokens: Int?
    @Option(help: "Write the logits here (f32, [T, V]).") var logits: String?
    @Option(help: "Kernel threads.") var threads = 1

    func run() throws {
        try CkptCommand.runTool {
            guard let type = RawTokenType(rawValue: dtype) else { throw ValidationError("--dtype \(dtype): use uint16, uint32, int32 or int64") }
            let reader = try CheckpointReader.locate(checkpoint)
            let evaluation = try CheckpointEvaluation(reader, threads: KernelThreads(count: max(1, threads)))
            let dataset = try TokenDataset.open(tokens, binType: type)
            let count = min(dataset.tokenCount, maxTokens ?? evaluation.model.maxPositionEmbeddings)
            let result = try evaluation.evaluate(try dataset.tokens(0..<count))
            if let logits {
                let data = result.logits.withUnsafeBufferPointer { Data(buffer: $0) }
                do { try data.write(to: URL(fileURLWithPath: logits), options: .atomic) } catch {
                    throw JobError("cannot write \(logits): \(error.localizedDescription)")
                }
            }
            let fields: [String: Any] = ["loss": result.loss, "tokens": count, "targets": result.targets, "checkpoint": reader.stepDirectory,
                                         "step": reader.step]
            print(String(decoding: try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]), as: UTF8.self))
        }
    }
}
