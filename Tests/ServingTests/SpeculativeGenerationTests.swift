import DataPipeline
import Foundation
import Model
import Serving
import Tensors
import Testing

/// Speculative decoding as `meshlm generate --draft-checkpoint` runs it: checkpoints written and
/// loaded back, the engine's stop rules and text, and the refusals.
@Suite struct SpeculativeGenerationTests {
    init() { useSingleThreadedBLAS() }

    /// Loaded from checkpoints, with stop rules: the same tokens, text and finish reason as the
    /// engine alone, for a truncated draft and an unrelated one.
    @Test func requestMatchesEngine() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tokenizer = ByteTokenizer()
        let config = servingConfig(vocabulary: tokenizer.vocabSize, layers: 3)
        let targetWeights = servingWeights(config, seed: 5, scale: 0.15)
        let target = try InferenceWeights.load(checkpoint: try writeCheckpoint(targetWeights, directory: directory + "/target"))
        let drafts = [try writeCheckpoint(targetWeights.truncated(layers: 1), directory: directory + "/truncated"),
                      try writeCheckpoint(servingWeights(servingConfig(vocabulary: tokenizer.vocabSize, layers: 1), seed: 42),
                                          directory: directory + "/stranger")]
        let prompt = tokenizer.encode("Speculate")
        var plain = SamplingParameters.greedy(maxTokens: 40)
        plain.ignoreEOS = true
        let firstRun = engineOutput(target, prompt: prompt, parameters: plain, tokenizer: tokenizer)
        // Stop at a token the target produces midway: both must cut at the same place.
        var stopping = plain
        stopping.stopTokens = [firstRun.tokens[17]]
        for draftPath in drafts {
            let draft = try InferenceWeights.load(checkpoint: draftPath)
            try SpeculativeDecoder.checkDraft(target: target, targetTokenizer: tokenizer.identity, targetSource: "target",
                                              draft: draft, draftTokenizer: tokenizer.identity, draftSource: draftPath)
            for (parameters, lookahead) in [(plain, 3), (stopping, 4)] {
                let expected = engineOutput(target, prompt: prompt, parameters: parameters, tokenizer: tokenizer)
                let decoder = SpeculativeDecoder(target: target, draft: draft, lookahead: lookahead)
                var tokens: [Int32] = [], text = ""
                let summary = try decoder.generate(prompt: prompt, parameters: parameters, tokenizer: tokenizer) { output in
                    if let token = output.token { tokens.append(token.token) }
                    text += output.text
                }
                #expect(tokens == expected.tokens, "draft \(draftPath), lookahead \(lookahead)")
                #expect(text == expected.text)
                #expect(summary.finishReason == expected.finish)
                #expect(summary.generatedCount == tokens.count)
                #expect(summary.targetForwardCount <= tokens.count)
                #expect(summary.acceptedCount <= summary.proposedCount)
                if !parameters.stopTokens.isEmpty { #expect(expected.finish == .stop && tokens.count <= 18) }
            }
        }
    }

    /// A draft with another vocabulary or tokenizer is refused, naming both checkpoints.
    @Test func mismatchedDraftIsRefused() {
        let bytes = ByteTokenizer().identity
        let target = servingWeights(servingConfig(vocabulary: 300, layers: 2))
        let smaller = servingWeights(servingConfig(vocabulary: 280, layers: 1))
        #expect(throws: ServingError(.checkpoint, "the draft runs/draft has vocab_size 280 but the target runs/target has 300: a draft must share the target's vocabulary (train it with the target's tokenizer)")) {
            try SpeculativeDecoder.checkDraft(target: target, targetTokenizer: bytes, targetSource: "runs/target",
                                              draft: smaller, draftTokenizer: bytes, draftSource: "runs/draft")
        }
        var other = bytes
        other.name = "tokenizer.json"
        other.hash = "sha256:0123"
        #expect(throws: ServingError(.checkpoint, "the draft runs/draft uses tokenizer 'tokenizer.json' (sha256:0123) but the target runs/target uses 'bytes' (\(bytes.hash)): a draft must share the target's tokenizer (train it with the target's tokenizer.json)")) {
            try SpeculativeDecoder.checkDraft(target: target, targetTokenizer: bytes, targetSource: "runs/target",
                                              draft: target.truncated(layers: 1), draftTokenizer: other, draftSource: "runs/draft")
        }
    }

    /// What speculation cannot reproduce exactly is an error, not a silent change.
    @Test func penaltiesAreRefused() {
        let target = servingWeights(servingConfig(layers: 2))
        let decoder = SpeculativeDecoder(target: target, draft: target.truncated(layers: 1), lookahead: 2)
        var penalty = SamplingParameters.greedy(maxTokens: 4)
        penalty.repetitionPenalty = 1.3
        #expect(throws: ServingError(.invalidRequest, "speculative decoding does not apply penalties: repetition_penalty 1.3 was asked with a draft model; leave it at 1.0 or drop the draft (--draft-checkpoint)", parameter: "repetition_penalty")) {
            try decoder.validate(prompt: [1, 2], parameters: penalty)
        }
        let long = SamplingParameters.greedy(maxTokens: 127)
        #expect(throws: ServingError.self) { try decoder.validate(prompt: [1, 2], parameters: long) }
    }

    /// The command: the same standard output with and without the draft, the figures on
    /// standard error; a draft of another vocabulary is refused; sampling with a seed repeats.
    @Test func generateCommandWithDraft() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weights = serverWeights()
        _ = try writeCheckpoint(weights, directory: directory + "/target/checkpoints")
        _ = try writeCheckpoint(weights.truncated(layers: 1), directory: directory + "/draft/checkpoints")
        _ = try writeCheckpoint(servingWeights(servingConfig(vocabulary: 300, layers: 1)), directory: directory + "/other/checkpoints")
        let common = ["generate", "--checkpoint", directory + "/target", "--prompt", "Hello", "--max-tokens", "24",
                      "--ignore-eos", "--threads", "1"]
        let (status, plain, error) = try runMeshLM(common)
        #expect(status == 0, "\(error)")
        for lookahead in ["2", "5"] {
            let (draftStatus, output, draftError) = try runMeshLM(common + ["--draft-checkpoint", directory + "/draft", "--lookahead", lookahead])
            #expect(draftStatus == 0, "\(draftError)")
            #expect(output == plain)
            #expect(draftError.contains("24 generated (finish: length), lookahead \(lookahead):"), "\(draftError)")
            #expect(draftError.contains("draft tokens accepted") && draftError.contains("tok/s"), "\(draftError)")
        }
        let (badStatus, _, badError) = try runMeshLM(common + ["--draft-checkpoint", directory + "/other"])
        #expect(badStatus != 0)
        #expect(badError.contains("the draft \(directory)/other has vocab_size 300 but the target \(directory)/target has 259"), "\(badError)")
        // Sampling with a draft: the same seed gives the same text; a penalty is refused.
        let sampled = common + ["--draft-checkpoint", directory + "/draft", "--temperature", "0.9", "--seed", "3"]
        let (sampleStatus, sampleOutput, sampleError) = try runMeshLM(sampled)
        let (_, sampleAgain, _) = try runMeshLM(sampled)
        #expect(sampleStatus == 0, "\(sampleError)")
        #expect(sampleOutput == sampleAgain && !sampleOutput.isEmpty)
        let (penaltyStatus, _, penaltyError) = try runMeshLM(sampled + ["--presence-penalty", "0.5"])
        #expect(penaltyStatus != 0)
        #expect(penaltyError.contains("speculative decoding does not apply penalties: presence_penalty 0.5"), "\(penaltyError)")
    }

    private func engineOutput(_ weights: InferenceWeights, prompt: [Int32], parameters: SamplingParameters,
                              tokenizer: any Tokenizer) -> (tokens: [Int32], text: String, finish: FinishReason?) {
        let engine = Engine(weights: weights, configuration: EngineConfiguration(blockCount: 32), tokenizer: tokenizer)
        var tokens: [Int32] = [], text = ""
        var finish: FinishReason?
        // The parameters are valid by construction here.
        guard let id = try? engine.add(prompt: prompt, parameters: parameters) else { return ([], "", nil) }
        while engine.hasWork {
            for output in engine.step() where output.requestID == id {
                if let token = output.token { tokens.append(token.token) }
                text += output.text
                if let reason = output.finishReason { finish = reason }
            }
        }
        return (tokens, text, finish)
    }
}
