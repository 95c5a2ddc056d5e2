import ArgumentParser
import DataPipeline
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
    @OptionGroup var draft: DraftOptions
    @Option(help: "The prompt text.") var prompt: String?
    @Option(name: .customLong("prompt-ids"),
            help: "The prompt as comma-separated token ids instead of text (to compare with another implementation).")
    var promptIds: String?
    @Flag(help: "Send --prompt as a user message through the checkpoint's chat template (or --chat-template) and stop at its end of turn.")
    var chat = false
    @Option(help: "With --chat: a system message before the user's.") var system: String?
    @Option(help: "A JSONL file of prompts generated together (batched): {\"prompt\": TEXT} or {\"messages\": [{\"role\", \"content\"}…]} per line, optionally with an \"id\"; messages go through the chat template. Writes one JSON line per prompt, in order.")
    var input: String?
    @Option(help: "With --input: write the JSON lines to this file instead of standard output.") var output: String?
    @Flag(help: "Print the prompt before the continuation.") var echo = false
    @Option(help: ArgumentHelp("Write the logits of every generated token to this file: raw little-endian float32, [tokens, vocab_size] (for checking tensor-parallel runs against one rank).", visibility: .hidden))
    var dumpLogits: String?
    @Option(help: ArgumentHelp("After generating, replace the model's weights in place with this checkpoint's (every rank taking its slices of the whole model, the prefix cache dropped) and generate the prompt again, printed on a second line: checks the in-process weight replacement trainers use (docs/serving.md).", visibility: .hidden))
    var replaceWeightsFrom: String?

    func validate() throws {
        if input != nil && (prompt != nil || promptIds != nil || chat || echo || dumpLogits != nil || replaceWeightsFrom != nil) {
            throw ValidationError("--input takes its prompts from the file: drop --prompt, --prompt-ids, --chat, --echo")
        }
        if output != nil && input == nil { throw ValidationError("--output goes with --input") }
        if system != nil && !chat { throw ValidationError("--system goes with --chat") }
        if chat && (promptIds != nil || prompt == nil) { throw ValidationError("--chat sends the --prompt text as the user's message: give --prompt (not --prompt-ids)") }
        if input != nil && draft.draftCheckpoint != nil { throw ValidationError("--input and --draft-checkpoint: speculative decoding runs one prompt") }
    }

    func run() throws {
        if draft.draftCheckpoint != nil { return try runSpeculative() }
        if let input {
            let prompts = try BatchPrompt.read(input)
            return try job.runJob { context in
                let (weights, tokenizer, tensorGroup) = try engine.load(world: context.world)
                let chat = try engine.chatPrompter(tokenizer: tokenizer)
                let generator = Engine(weights: weights, configuration: engine.configuration, tokenizer: tokenizer,
                                       threads: KernelThreads(count: context.threads), tensorGroup: tensorGroup)
                try generateBatch(generator, prompts: prompts, chat: chat, tokenizer: tokenizer, tensorGroup: tensorGroup,
                                  context: context)
            }
        }

        try job.runJob { context in
            let (weights, tokenizer, tensorGroup) = try engine.load(world: context.world)
            let generator = Engine(weights: weights, configuration: engine.configuration, tokenizer: tokenizer,
                                   threads: KernelThreads(count: context.threads), tensorGroup: tensorGroup)
            var dumped = Data()
            if dumpLogits != nil {
                generator.logitsObserver = { _, row in dumped.append(Data(buffer: UnsafeBufferPointer(row))) }
            }
            try generateOnce(generator, tokenizer: tokenizer, tensorGroup: tensorGroup, context: context)
            if let replaceWeightsFrom {
                // Every rank reads the whole new model and takes its own slices, as a trainer
                // holding a whole-model arena hands them over; the followers left `follow` when
                // rank 0 stopped them, so the engine is idle everywhere.
                let replacement = try context.world.collectively { try InferenceWeights.load(checkpoint: replaceWeightsFrom) }
                try context.world.collectively {
                    try generator.replaceWeights(from: replacement.parameters.pointer, layout: replacement.layout)
                }
                try generateOnce(generator, tokenizer: tokenizer, tensorGroup: tensorGroup, context: context)
            }
            if let dumpLogits, tensorGroup?.isLeader ?? true {
                try FileOutput.writeAtomically(dumped, to: dumpLogits, option: "--dump-logits")
            }
        }
    }

    /// Generates the prompt once and prints it: rank 0 steps the engine, the followers of a
    /// tensor-parallel group run its batches until it stops them.
    private func generateOnce(_ generator: Engine, tokenizer: any Tokenizer, tensorGroup: InferenceTensorGroup?,
                              context: JobContext) throws {
        if let tensorGroup, !tensorGroup.isLeader {
            generator.model.follow(cache: generator.cache)
            return
        }
        // Rank 0 alone from here; the followers run its batches until stopFollowers.
        defer { tensorGroup?.stopFollowers() }
        let (ids, shown, parameters) = try promptAndParameters(tokenizer, vocabularySize: generator.model.config.vocabSize)
        let id = try generator.add(prompt: ids, parameters: parameters)
        if echo { Log.write(shown, to: .standardOutput) }
        let start = monotonicSeconds()
        var firstToken: Double?
        var generated = 0
        var reason = FinishReason.length
        while generator.hasWork {
            for output in generator.step() where output.requestID == id {
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

    /// With --draft-checkpoint: speculative decoding (greedy, or speculative sampling), the text
    /// printed as each verified run is decided, then the acceptance figures on standard error.
    /// One rank: the decoder drives one sequence with whole models.
    private func runSpeculative() throws {
        try job.runJob { context in
            guard context.world.size == 1 else {
                throw JobError("--draft-checkpoint (speculative decoding) runs on one rank; drop it or start without mpirun -np \(context.world.size)")
            }
            let (target, tokenizer) = try engine.load()
            guard let draft = try draft.load(engine: engine, target: target, targetTokenizer: tokenizer) else { return }
            try generateSpeculatively(target: target, draft: draft, tokenizer: tokenizer,
                                      threads: KernelThreads(count: context.threads))
        }
    }

    private func generateSpeculatively(target: InferenceWeights, draft: InferenceWeights, tokenizer: any Tokenizer,
                                       threads: KernelThreads) throws {
        let decoder = SpeculativeDecoder(target: target, draft: draft, lookahead: self.draft.lookahead, threads: threads)
        let (ids, shown, parameters) = try promptAndParameters(tokenizer, vocabularySize: target.config.vocabSize)
        if echo { Log.write(shown, to: .standardOutput) }
        let start = monotonicSeconds()
        var firstToken: Double?
        let summary = try decoder.generate(prompt: ids, parameters: parameters, tokenizer: tokenizer) { output in
            if output.token != nil && firstToken == nil { firstToken = monotonicSeconds() }
            if !output.text.isEmpty { Log.write(output.text, to: .standardOutput) }
        }
        Log.write("\n", to: .standardOutput)
        let elapsed = monotonicSeconds() - start
        let decodeSeconds = elapsed - ((firstToken ?? start) - start)
        Log.write(String(format: "speculative: %d prompt tokens, %d generated (finish: %@), lookahead %d: %.0f%% of %d draft tokens accepted, %.2f tokens per target forward (%d forwards); first token %.1f ms, then %.1f tok/s\n",
                         ids.count, summary.generatedCount, summary.finishReason.rawValue, self.draft.lookahead,
                         100 * summary.acceptanceRate, summary.proposedCount, summary.tokensPerTargetForward,
                         summary.targetForwardCount, ((firstToken ?? start) - start) * 1e3,
                         summary.generatedCount > 1 ? Double(summary.generatedCount - 1) / decodeSeconds : 0),
                  to: .standardError)
    }

    /// The prompt's ids, its text as `--echo` shows it, and the sampling parameters with the chat
    /// template's stop rules under `--chat`.
    private func promptAndParameters(_ tokenizer: any Tokenizer,
                                     vocabularySize: Int) throws -> (ids: [Int32], shown: String, parameters: SamplingParameters) {
        var parameters = sampling.parameters
        guard chat else {
            let ids = try promptTokens(tokenizer, vocabularySize: vocabularySize)
            return (ids, prompt ?? tokenizer.decode(ids), parameters)
        }
        let prompter = try engine.chatPrompter(tokenizer: tokenizer)
        let messages = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: prompt ?? "")]
        parameters.stopStrings += prompter.stopStrings
        parameters.stopTokens += prompter.stopTokens
        return (try prompter.prompt(messages), try prompter.text(messages), parameters)
    }

    /// --prompt encoded, or the ids of --prompt-ids (exactly one of them), each below the
    /// model's vocabulary size.
    private func promptTokens(_ tokenizer: any Tokenizer, vocabularySize: Int) throws -> [Int32] {
        switch (prompt, promptIds) {
        case (let text?, nil):
            return tokenizer.encode(text)
        case (nil, let list?):
            let fields = list.split(separator: ",", omittingEmptySubsequences: false)
            let ids = fields.compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty, ids.count == fields.count, ids.allSatisfy({ (0..<Int32(vocabularySize)).contains($0) }) else {
                throw JobError("--prompt-ids \(list): give comma-separated token ids in 0..<\(vocabularySize) (the model's vocab_size)")
            }
            return ids
        default:
            throw JobError("give the prompt as --prompt TEXT or as --prompt-ids ID,ID,… (one of them)")
        }
    }
}
