import ArgumentParser

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Train a byte-level BPE tokenizer and encode text with one (docs/data.md).",
        subcommands: [TokenizerTrainCommand.self, TokenizerEncodeCommand.self])
}
