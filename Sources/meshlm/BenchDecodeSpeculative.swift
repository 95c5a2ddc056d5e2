import Foundation
import DataPipeline
import Runtime
import Serving
import Tensors

/// `bench decode` with a draft model: greedy speculative decoding against plain batch-1 decode
/// through the engine, on the same prompts, in the same run.
extension BenchDecodeCommand {
    /// The prompts: one per line of --prompt-file (encoded with the target's tokenizer), else
    /// --prompts random ones of --prompt-tokens ids.
    func speculativePrompts(weights: InferenceWeights) throws -> [[Int32]] {
        guard let promptFile else {
            var generator = SplitMix64(seed: 7)
            return (0..<prompts).map { _ in
                (0..<promptTokens).map { _ in Int32(generator.next() % UInt64(weights.config.vocabSize)) }
            }
        }
        guard let data = FileManager.default.contents(atPath: promptFile) else {
            throw JobError("cannot read --prompt-file \(promptFile): give a text file with one prompt per line")
        }
        let tokenizer = try benchTokenizer(checkpoint)
        var encoded: [[Int32]] = []
        for (index, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty else { continue }
            let ids = tokenizer.encode(text)
            guard !ids.isEmpty, ids.count + tokens <= weights.config.maxPositionEmbeddings else {
                throw JobError("\(promptFile):\(index + 1): the prompt has \(ids.count) tokens; with --tokens \(tokens) it must fit max_position_embeddings \(weights.config.maxPositionEmbeddings) (shorten the line)")
            }
            encoded.append(ids)
        }
        guard !encoded.isEmpty else { throw JobError("--prompt-file \(promptFile) holds no prompt: give one prompt per line") }
        return encoded
    }

    /// A checkpoint's own tokenizer.json, else bytes (what `generate` uses); bytes for random weights.
    func benchTokenizer(_ checkpoint: String?) throws -> any Tokenizer {
        guard let checkpoint else { return ByteTokenizer() }
        let saved = try InferenceWeights.resolveStepDirectory(checkpoint) + "/tokenizer.json"
        return try TokenizerLoader.load(FileManager.default.fileExists(atPath: saved) ? saved : "bytes")
    }

    /// One table: plain decode through the engine and as a bare loop of forwards, then each
    /// lookahead, over all prompts (tok/s = generated tokens after each prompt's first over the
    /// time after its first; median of the repeats; speed-up against the bare loop). The
    /// decoders take turns within each repeat, so a noisy moment hits them all alike. Every
    /// output is checked against the engine's.
    func measureSpeculative(target: InferenceWeights, draft: InferenceWeights, draftName: String, prompts: [[Int32]],
                            tokens: Int, repeats: Int, threads: KernelThreads, json: Bool, log: Log) throws {
        var report = BenchReport(bench: "decode-speculative",
                                 columns: ["decoder", "lookahead", "draft tokens accepted", "tokens per target forward", "tok/s", "speed-up"],
                                 json: json, log: log)
        var expected: [[Int32]] = []
        var engineRates: [Double] = [], loopRates: [Double] = []
        var speculativeRates = [[Double]](repeating: [], count: lookahead.count)
        var counts = [(proposed: Int, accepted: Int, forwards: Int, generated: Int)](repeating: (0, 0, 0, 0), count: lookahead.count)
        for repeatIndex in 0..<repeats {
            // Plain greedy decode through the engine at batch 1: the reference output.
            var generatedAfterFirst = 0
            var seconds = 0.0
            for prompt in prompts {
                let engine = Engine(weights: target, configuration: EngineConfiguration(blockCount: (prompt.count + tokens) / 16 + 2),
                                    tokenizer: nil, threads: threads)
                var parameters = SamplingParameters.greedy(maxTokens: tokens)
                parameters.ignoreEOS = true
                try engine.add(prompt: prompt, parameters: parameters)
                var output: [Int32] = []
                var first = 0.0
                while engine.hasWork {
                    for step in engine.step() {
                        guard let token = step.token else { continue }
                        if output.isEmpty { first = monotonicSeconds() }
                        output.append(token.token)
                    }
                }
                seconds += monotonicSeconds() - first
                generatedAfterFirst += output.count - 1
                if repeatIndex == 0 { expected.append(output) }
            }
            engineRates.append(Double(generatedAfterFirst) / seconds)
            // The same greedy decode as a bare loop of target forwards (no scheduler, no
            // sampler): the speculative loop has no engine around it either, so this is the peer.
            generatedAfterFirst = 0
            seconds = 0
            for (index, prompt) in prompts.enumerated() {
                let (output, elapsed) = bareGreedy(target, prompt: prompt, tokens: tokens, threads: threads)
                guard output == expected[index] else {
                    throw JobError("the bare forward loop differs from the engine's greedy decoding on prompt \(index + 1): this is a bug, please report it")
                }
                generatedAfterFirst += tokens - 1
                seconds += elapsed
            }
            loopRates.append(Double(generatedAfterFirst) / seconds)
            for (column, lookahead) in self.lookahead.enumerated() {
                let decoder = SpeculativeDecoder(target: target, draft: draft, lookahead: lookahead, threads: threads)
                generatedAfterFirst = 0
                seconds = 0
                for (index, prompt) in prompts.enumerated() {
                    var first: Double?
                    let output = decoder.decode(prompt: prompt, maxTokens: tokens) { run in
                        if first == nil { first = monotonicSeconds() } else { generatedAfterFirst += run.count }
                        return true
                    }
                    seconds += monotonicSeconds() - (first ?? 0)
                    guard output == expected[index] else {
                        let at = zip(output, expected[index]).prefix { $0 == $1 }.count
                        throw JobError("speculative decoding (lookahead \(lookahead)) differs from plain greedy decoding on prompt \(index + 1) at generated token \(at): this is a bug, please report it")
                    }
                }
                speculativeRates[column].append(Double(generatedAfterFirst) / seconds)
                // Greedy: the same every repeat.
                counts[column] = (decoder.proposedCount, decoder.acceptedCount, decoder.targetForwardCount, decoder.generatedCount)
            }
        }
        let plain = median(loopRates), engineRate = median(engineRates)
        report.add(cells: ["plain, engine (generate without draft)", "", "", "1.00", String(format: "%.1f", engineRate),
                           String(format: "%.2f×", engineRate / plain)],
                   fields: ["decoder": "engine", "tokens_per_s": engineRate, "speedup": engineRate / plain,
                            "prompts": prompts.count, "generated_tokens": tokens, "threads": threads.count])
        report.add(cells: ["plain, bare forward loop", "", "", "1.00", String(format: "%.1f", plain), "1.00×"],
                   fields: ["decoder": "plain", "tokens_per_s": plain, "prompts": prompts.count, "generated_tokens": tokens,
                            "threads": threads.count])
        for (column, lookahead) in self.lookahead.enumerated() {
            let rate = median(speculativeRates[column])
            let (proposed, accepted, forwards, generated) = counts[column]
            let acceptance = proposed == 0 ? 0 : Double(accepted) / Double(proposed)
            let perForward = forwards == 0 ? 0 : Double(generated) / Double(forwards)
            report.add(cells: ["speculative, draft \(draftName)", "\(lookahead)", String(format: "%.0f%%", 100 * acceptance),
                               String(format: "%.2f", perForward), String(format: "%.1f", rate), String(format: "%.2f×", rate / plain)],
                       fields: ["decoder": "speculative", "draft": draftName, "lookahead": lookahead, "acceptance_rate": acceptance,
                                "tokens_per_target_forward": perForward, "tokens_per_s": rate, "plain_tokens_per_s": plain,
                                "engine_tokens_per_s": engineRate, "speedup": rate / plain, "prompts": prompts.count,
                                "generated_tokens": tokens, "threads": threads.count])
        }
        report.printTable()
    }

    /// Prefill, then one target forward per token, argmax: returns the tokens and the seconds
    /// after the first token.
    private func bareGreedy(_ weights: InferenceWeights, prompt: [Int32], tokens: Int,
                            threads: KernelThreads) -> ([Int32], Double) {
        let config = weights.config
        let model = InferenceModel(weights: weights, maximumRows: prompt.count, threads: threads)
        let blockSize = 16
        let table = Array(0..<(prompt.count + tokens + blockSize) / blockSize)
        let cache = KVBlockPool(blockCount: table.count, blockSize: blockSize, layerCount: config.numHiddenLayers,
                                slotWidth: config.numKeyValueHeads * config.headDim)
        var sequence = prompt
        var start = 0
        var first = 0.0
        while sequence.count < prompt.count + tokens {
            var batch = ForwardBatch()
            batch.blockTables = [table]
            batch.tokens = Array(sequence[start...])
            batch.positions = (start..<sequence.count).map { Int32($0) }
            batch.sequenceIndices = Array(repeating: 0, count: sequence.count - start)
            batch.logitRows = [sequence.count - start - 1]
            let logits = model.forward(batch, cache: cache)
            start = sequence.count
            sequence.append(Int32(Sampler.argmax(UnsafeBufferPointer(rebasing: logits[0..<config.vocabSize]))))
            if sequence.count == prompt.count + 1 { first = monotonicSeconds() }
        }
        return (Array(sequence[prompt.count...]), monotonicSeconds() - first)
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
}
