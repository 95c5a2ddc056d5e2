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

    /// One table: plain decode, then each lookahead, over all prompts (tok/s = generated tokens
    /// after each prompt's first over the time after its first; median of the repeats). Every
    /// speculative output is checked against the plain output first.
    func measureSpeculative(target: InferenceWeights, draft: InferenceWeights, draftName: String, prompts: [[Int32]],
                            tokens: Int, repeats: Int, threads: KernelThreads, json: Bool, log: Log) throws {
        var report = BenchReport(bench: "decode-speculative",
                                 columns: ["decoder", "lookahead", "draft tokens accepted", "tokens per target forward", "tok/s", "speed-up"],
                                 json: json, log: log)
        // Plain greedy decode through the engine at batch 1: the reference output and speed.
        var expected: [[Int32]] = []
        var plainRates: [Double] = []
        for repeatIndex in 0..<repeats {
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
            plainRates.append(Double(generatedAfterFirst) / seconds)
        }
        let plain = median(plainRates)
        report.add(cells: ["plain (target alone)", "", "", "1.00", String(format: "%.1f", plain), "1.00×"],
                   fields: ["decoder": "plain", "tokens_per_s": plain, "prompts": prompts.count, "generated_tokens": tokens,
                            "threads": threads.count])
        for lookahead in self.lookahead {
            var rates: [Double] = []
            var proposed = 0, accepted = 0, forwards = 0, generated = 0
            for repeatIndex in 0..<repeats {
                let decoder = SpeculativeDecoder(target: target, draft: draft, lookahead: lookahead, threads: threads)
                var generatedAfterFirst = 0
                var seconds = 0.0
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
                rates.append(Double(generatedAfterFirst) / seconds)
                if repeatIndex == 0 {
                    (proposed, accepted, forwards, generated) = (decoder.proposedCount, decoder.acceptedCount,
                                                                 decoder.targetForwardCount, decoder.generatedCount)
                }
            }
            let rate = median(rates)
            let acceptance = proposed == 0 ? 0 : Double(accepted) / Double(proposed)
            let perForward = forwards == 0 ? 0 : Double(generated) / Double(forwards)
            report.add(cells: ["speculative, draft \(draftName)", "\(lookahead)", String(format: "%.0f%%", 100 * acceptance),
                               String(format: "%.2f", perForward), String(format: "%.1f", rate), String(format: "%.2f×", rate / plain)],
                       fields: ["decoder": "speculative", "draft": draftName, "lookahead": lookahead, "acceptance_rate": acceptance,
                                "tokens_per_target_forward": perForward, "tokens_per_s": rate, "plain_tokens_per_s": plain,
                                "speedup": rate / plain, "prompts": prompts.count, "generated_tokens": tokens,
                                "threads": threads.count])
        }
        report.printTable()
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
}
