import Foundation
import Testing

/// The f32 values of a raw little-endian file (logits and scores the CLI dumps).
func floats(atPath path: String) throws -> [Float] {
    try Data(contentsOf: URL(fileURLWithPath: path)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

/// `meshlm eval --logits` of `checkpoint` over `tokens` (one window, positions 0…T−1): the launch
/// (expected to succeed) and the logits (a scalar head's scores) it wrote.
func evalLogits(_ checkpoint: String, tokens: [Int32], work: String) throws -> (Launch, [Float]) {
    let tokenFile = work + "/tokens.bin", logits = work + "/eval-logits-\(UUID().uuidString.prefix(6)).bin"
    try tokens.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: tokenFile))
    let evaluating = try Launcher.plain("meshlm", ["eval", "--checkpoint", checkpoint, "--tokens", tokenFile, "--dtype", "int32",
                                                   "--seq-len", "\(tokens.count)", "--logits", logits])
    #expect(evaluating.status == 0, "meshlm eval --checkpoint \(checkpoint): \(evaluating.standardError)")
    return (evaluating, try floats(atPath: logits))
}

/// The serving engine's logits for the first token generated after `tokens` (`meshlm generate
/// --dump-logits`), on one rank or `ranks` tensor-parallel ones: the launch (expected to
/// succeed) and the [vocab] logits.
func engineLogits(_ checkpoint: String, tokens: [Int32], ranks: Int, dump: String) throws -> (Launch, [Float]) {
    let arguments = ["generate", "--checkpoint", checkpoint, "--prompt-ids", tokens.map(String.init).joined(separator: ","),
                     "--max-tokens", "1", "--threads", "1", "--dump-logits", dump]
    let generating = ranks == 1 ? try Launcher.plain("meshlm", arguments) : try Launcher.mpirun(ranks, "meshlm", arguments)
    #expect(generating.status == 0, "meshlm generate, tp \(ranks): \(generating.standardError)")
    return (generating, try floats(atPath: dump))
}
