import ArgumentParser
import Foundation
import DataPipeline
import Serving
import Training

/// The draft model of speculative decoding (`generate --draft-checkpoint`).
struct DraftOptions: ParsableArguments {
    @Option(help: "A smaller model's checkpoint (same forms as --checkpoint) that proposes tokens for the target to verify: greedy speculative decoding, the same output as without it. Needs the target's vocabulary and tokenizer.")
    var draftCheckpoint: String?

    @Option(parsing: .unconditional, help: "Draft tokens proposed per target forward (with --draft-checkpoint).")
    var lookahead = 4

    func validate() throws {
        guard (1..<SmallBatchLinear.maximumRows).contains(lookahead) else {
            throw ValidationError("--lookahead must be in 1...\(SmallBatchLinear.maximumRows - 1), got \(lookahead)")
        }
    }

    /// Loads the draft and checks it against the target: the same vocab_size and the same
    /// tokenizer. A checkpoint's tokenizer is its own tokenizer.json, else `--tokenizer`, else
    /// bytes (the rule `EngineOptions.load` applies to the target).
    func load(engine: EngineOptions, target: InferenceWeights, targetTokenizer: any Tokenizer) throws -> InferenceWeights? {
        guard let draftCheckpoint else { return nil }
        let draft = try InferenceWeights.load(checkpoint: draftCheckpoint)
        let step = try InferenceWeights.resolveStepDirectory(draftCheckpoint)
        let ownFile = FileManager.default.fileExists(atPath: step + "/" + CheckpointExtras.tokenizerName)
        let draftTokenizer = try CheckpointTokenizer.load(for: step, given: ownFile ? nil : engine.tokenizer)
        try SpeculativeDecoder.checkDraft(target: target, targetTokenizer: targetTokenizer.identity, targetSource: engine.checkpoint,
                                          draft: draft, draftTokenizer: draftTokenizer.identity, draftSource: draftCheckpoint)
        return draft
    }
}
