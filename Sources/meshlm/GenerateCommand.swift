import ArgumentParser
import Foundation
import Runtime
import Serving
import Tensors

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt with a checkpoint's model, streaming the text to standard output as it comes.",
        discussion: "Greedy by default; see docs/serving.md for the sampling flags.")

    @OptionGroup var job: JobOptions
    @OptionGroup var engine: EngineOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(help: "The prompt text.") var prompt: String
    @Flag(help: "Print the prompt before the continuation.") var echo = false

    func run() throws {
        try job.runJob { context in
            let (weights, tokenizer) = try engine.load()
            let parameters = sampling.parameters
            let generator = Engine(weights: weights, configuration: engine.configuration, tokenizer: tokenizer,
                                   threads: KernelThreads(count: context.threads))
            let ids = tokenizer.encode(prompt)
            let id = try generator.add(prompt: ids, parameters: parameters)
            guard context.world.rank == 0 else { return }
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
            let elapsed = monotonicSeconds() - start
            let decodeSeconds = elapsed - ((firstToken ?? start) - start)
            context.log.debug(String(format: "%d prompt tokens, %d generated (finish: %@); first token %.1f ms, then %.1f tok/s",
                                     ids.count, generated, reason.rawValue, ((firstToken ?? start) - start) * 1e3,
                                     generated > 1 ? Double(generated - 1) / decodeSeconds : 0))
        }
    }
}
