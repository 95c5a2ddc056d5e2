import ArgumentParser
import Checkpoint
import DataPipeline
import Foundation
import Model
import Runtime
import Serving
import Tensors
import Training

/// `meshlm eval --checkpoint DIR --tokens FILE [--seq-len N]`: next-token loss and perplexity of
/// a checkpoint's model over a token stream, data parallel under mpirun.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Loss and perplexity of a checkpoint's model over a token file or shard directory; prints one JSON line.",
        discussion: """
            The tokens (a shard directory, a .npy, or a headerless .bin of --dtype ids) are one stream, \
            cut into windows of --seq-len positions that overlap by one token, so every token after \
            the first is predicted exactly once. Under mpirun each rank evaluates a contiguous share \
            of the windows and the per-window sums are combined in window order: the same loss on \
            any number of ranks. Prints {"checkpoint", "loss", "perplexity", "seq_len", "step", \
            "tokens", "windows"} (tokens: the tokens predicted). --logits writes the [T, V] logits of \
            a single window as little-endian f32 for comparison with another implementation \
            (tools/check-hf-roundtrip.py). A model with a scalar head (a reward or value model) has \
            no loss: --logits writes its scores [T, num_labels] at every position and the line is \
            {"checkpoint", "num_labels", "positions", "step"}. A quantized checkpoint (`ckpt quantize`) \
            runs through the inference forward with its quantized kernels (docs/serving.md, "Quantization").
            """)

    @OptionGroup var job: JobOptions
    @Option(help: "A step directory (RUN/checkpoints/step_N), a checkpoints directory or a run directory (its newest committed checkpoint).")
    var checkpoint: String
    @Option(help: "The token file or shard directory.") var tokens: String
    @Option(help: "Id type of a headerless .bin: uint16, uint32, int32, int64.") var dtype = "uint16"
    @Option(name: .customLong("seq-len"), parsing: .unconditional, help: "Positions per window, 2 up to max_position_embeddings (default: max_position_embeddings).")
    var seqLen: Int?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Windows per forward pass on each rank.") var batchSize = 1
    @Option(name: .customLong("max-windows"), parsing: .unconditional, help: "Evaluate only the first N windows.") var maxWindows: Int?
    @Option(name: .customLong("max-tokens"), parsing: .unconditional, help: "Use only the first N tokens of the stream.") var maxTokens: Int?
    @Option(help: "Write the logits here (f32, [T, V]); needs the tokens to fit one window and one rank.") var logits: String?

    func run() throws {
        try job.runJob { context in
            let world = context.world
            let (evaluation, quantized, reader, dataset, windows) = try world.collectively {
                guard let type = RawTokenType(rawValue: dtype) else { throw JobError("--dtype \(dtype): use uint16, uint32, int32 or int64") }
                if batchSize < 1 { throw JobError("--batch-size must be at least 1, got \(batchSize)") }
                if let maxWindows, maxWindows < 1 { throw JobError("--max-windows must be at least 1, got \(maxWindows)") }
                if let maxTokens, maxTokens < 2 { throw JobError("--max-tokens must be at least 2 (one to read, one to predict), got \(maxTokens)") }
                let reader = try CheckpointReader.locate(checkpoint)
                // A quantized checkpoint runs through the inference model; the training model reads f32 only.
                let isQuantized = reader.index.tensors.contains { $0.dtype.isQuantized }
                let evaluation = isQuantized ? nil : try CheckpointEvaluation(reader, threads: KernelThreads(count: context.threads))
                let quantized = isQuantized ? try InferenceWeights.load(checkpoint: reader.stepDirectory) : nil
                guard let model = evaluation?.model ?? quantized?.config else { preconditionFailure("no model") }
                if isQuantized && logits != nil {
                    throw JobError("--logits reads the training model's f32 weights; \(reader.stepDirectory) is quantized: give the f32 checkpoint it was made from")
                }
                let positions = model.maxPositionEmbeddings
                let seqLen = self.seqLen ?? positions
                if seqLen < 2 { throw JobError("--seq-len must be at least 2, got \(seqLen)") }
                if seqLen > positions {
                    throw JobError("--seq-len \(seqLen) exceeds the model's max_position_embeddings \(positions) (\(reader.stepDirectory))")
                }
                let dataset = try TokenDataset.open(tokens, binType: type)
                try CheckpointTokenizer.checkData(dataset.manifest?.tokenizer, dataPath: tokens, checkpoint: reader.stepDirectory)
                let count = min(dataset.tokenCount, maxTokens ?? .max)
                if count < 2 { throw JobError("\(tokens): \(count) token\(count == 1 ? "" : "s"); eval needs at least 2 (one to read, one to predict)") }
                let windows = EvaluationWindows(tokenCount: count, sequenceLength: seqLen, limit: maxWindows)
                if logits != nil && (world.size > 1 || windows.count > 1 || windows.tokenCount > seqLen) {
                    throw JobError("--logits needs the tokens to fit one window on one rank: \(windows.tokenCount) tokens, --seq-len \(seqLen), \(world.size) rank(s) (use --max-tokens)")
                }
                if model.hasScoreHead && logits == nil {
                    throw JobError("\(reader.stepDirectory) holds a model with a scalar head (num_labels \(model.numLabels): a reward or value model), which has no next-token loss; --logits writes its scores [T, num_labels]")
                }
                return (evaluation, quantized, reader, dataset, windows)
            }
            if let logits, let evaluation {
                let result = try evaluation.evaluate(try dataset.tokens(0..<windows.tokenCount))
                let data = result.logits.withUnsafeBufferPointer { Data(buffer: $0) }
                do { try data.write(to: URL(fileURLWithPath: logits), options: .atomic) } catch {
                    throw JobError("--logits \(logits): cannot write: \(FileProblem.reason(error, path: logits)); give the path of a file in an existing directory")
                }
                if evaluation.model.hasScoreHead {
                    var line = JSONLine()
                    line.add("checkpoint", reader.stepDirectory)
                    line.add("num_labels", evaluation.model.numLabels)
                    line.add("positions", windows.tokenCount)
                    line.add("step", reader.step)
                    context.log.info(line.text)
                    return
                }
            }
            // A contiguous share of the windows per rank; each window's sum lands in its own slot
            // (the others add zeros), so the total is summed in window order on any rank count.
            let share = windows.count * world.rank / world.size..<windows.count * (world.rank + 1) / world.size
            let local = try world.collectively {
                if let evaluation { return try evaluation.lossSums(of: share, windows: windows, dataset: dataset, batchSize: batchSize) }
                guard let quantized else { preconditionFailure("no model") }
                return try quantizedLossSums(of: share, windows: windows, dataset: dataset, weights: quantized,
                                             threads: KernelThreads(count: context.threads))
            }
            var sums = [Double](repeating: 0, count: windows.count)
            sums.replaceSubrange(share, with: local)
            try world.allreduce(&sums, .sum)
            let loss = sums.reduce(0, +) / Double(windows.targetCount)
            var line = JSONLine()
            line.add("checkpoint", reader.stepDirectory)
            line.add("loss", loss)
            line.add("perplexity", exp(loss))
            line.add("seq_len", windows.sequenceLength)
            line.add("step", reader.step)
            line.add("tokens", windows.targetCount)
            line.add("windows", windows.count)
            context.log.info(line.text)
        }
    }

    /// `CheckpointEvaluation.lossSums` through the inference forward (a quantized checkpoint):
    /// the same windows and targets, one window at a time.
    func quantizedLossSums(of range: Range<Int>, windows: EvaluationWindows, dataset: TokenDataset, weights: InferenceWeights,
                           threads: KernelThreads) throws -> [Double] {
        let evaluation = InferenceEvaluation(weights: weights, maximumLength: windows.modelSequenceLength, threads: threads)
        let vocabulary = weights.config.vocabSize
        return try range.map { window in
            let inputs = windows.inputs(window)
            let read = try dataset.tokens(inputs.lowerBound..<min(inputs.upperBound + 1, windows.tokenCount))
            if let bad = read.firstIndex(where: { $0 < 0 || Int($0) >= vocabulary }) {
                throw JobError("\(dataset.path): token \(inputs.lowerBound + bad) is id \(read[bad]), outside the model's vocabulary of \(vocabulary) ids")
            }
            let tokens = Array(read[0..<inputs.count])
            let targets = (0..<inputs.count).map { $0 + 1 < read.count ? read[$0 + 1] : CrossEntropy.defaultIgnoreIndex }
            return evaluation.lossSum(tokens: tokens, targets: targets, ignored: CrossEntropy.defaultIgnoreIndex)
        }
    }
}
