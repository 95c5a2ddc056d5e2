import ArgumentParser
import Foundation
import Runtime
import Serving
import Tensors

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt with a checkpoint's model, streaming the text to standard output as it comes.",
        discussion: "Greedy by default; see docs/serving.md for the sampling flags. Under mpirun -np N the model is split over the N ranks (tensor parallelism) and rank 0 prints.")

    @OptionGroup var job: JobOptions
    @OptionGroup var engine: EngineOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(help: "The prompt text.") var prompt: String
    @Flag(help: "Print the prompt before the continuation.") var echo = false
    @Option(help: ArgumentHelp("Write the logits of every generated token to this file: raw little-endian float32, [tokens, vocab_size] (for checking tensor-parallel runs against one rank).", visibility: .hidden))
    var dumpLogits: String?

    func run() throws {
        try job.runJob { context in
            let (weights, tokenizer, tensorGroup) = try engine.load(world: context.world)
            let parameters = sampling.parameters
            let generator = Engine(weights: weights, configuration: engine.configuration, tokenizer: tokenizer,
                                   threads: KernelThreads(count: context.threads), tensorGroup: tensorGroup)
            if let tensorGroup, !tensorGroup.isLeader {
                generator.model.follow(cache: generator.cache)
                return
            }
            // Rank 0 alone from here; the followers run its batches until stopFollowers.
            defer { tensorGroup?.stopFollowers() }
            let ids = tokenizer.encode(prompt)
            let id = try generator.add(prompt: ids, parameters: parameters)
            var dumped = Data()
            if dumpLogits != nil {
                generator.logitsObserver = { _, row in dumped.append(Data(buffer: UnsafeBufferPointer(row))) }
            }
            if echo { Log.write(prompt, to: .standardOutput) }
            let start = monotonicSeconds()
            var firstToken: Double?
            var generated = 0
            var reason = FinishReason.length
            while generator.hasWork {
                for output in generator.step() where output.sequenceID == id {
                    if output.token != nil {
                        generated += 1
                        if firstToken == nil { firstToken = monotonicSeconds() }
                    }
                    if !output.text.isEmpty { Log.write(output.text, to: .standardOutput) }
                    if let finish = output.finishReason { reason = finish }
                }
            }
            Log.write("\n", to: .standardOutput)
            if let dumpLogits {
                // A temporary name, then rename: a reader never sees half a file.
                let temporary = dumpLogits + ".tmp-\(getpid())"
                guard FileManager.default.createFile(atPath: temporary, contents: dumped) else {
                    throw JobError("cannot write --dump-logits \(dumpLogits): check that its directory exists and is writable")
                }
                _ = try? FileManager.default.removeItem(atPath: dumpLogits)
                try FileManager.default.moveItem(atPath: temporary, toPath: dumpLogits)
            }
            let elapsed = monotonicSeconds() - start
            let decodeSeconds = elapsed - ((firstToken ?? start) - start)
            context.log.debug(String(format: "%d prompt tokens, %d generated (finish: %@); first token %.1f ms, then %.1f tok/s",
                                     ids.count, generated, reason.rawValue, ((firstToken ?? start) - start) * 1e3,
                                     generated > 1 ? Double(generated - 1) / decodeSeconds : 0))
        }
    }
}
