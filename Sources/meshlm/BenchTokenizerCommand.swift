import ArgumentParser
import DataPipeline
import Foundation
import Runtime

/// Single-thread encode speed of a tokenizer.json on documents held in memory (reading and JSON
/// parsing excluded), as tools/bench-tokenizer.sh compares it with tiktoken and HF `tokenizers`.
struct BenchTokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Encode speed (MB/s of UTF-8 text, one thread) of a tokenizer.json, and of its pre-tokenizer alone.",
        discussion: "Each repeat loads a fresh tokenizer, so its piece cache starts empty as in a real run. Runs on rank 0.")

    @OptionGroup var job: JobOptions
    @Option(name: .long, help: "The tokenizer.json.") var tokenizer: String
    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories.") var input: [String] = []
    @Option(name: .long, parsing: .unconditional, help: "Timed repeats (the median is reported).") var repeats = 3

    func run() throws {
        try job.runJob { context in
            try context.world.collectively {
                guard context.world.rank == 0 else { return }
                var texts = [String]()
                for file in try DocumentReader.expand(input).files {
                    let reader = try DocumentReader(path: file)
                    while let document = try reader.next() { texts.append(document.text) }
                }
                let bytes = Double(texts.reduce(0) { $0 + $1.utf8.count })
                let model = try TokenizerJSON.load(tokenizer)
                var encodeSeconds = [Double]()
                var splitSeconds = [Double]()
                var tokens = 0
                for _ in 0..<max(1, repeats) {
                    let fresh = try BPETokenizer(model: model, name: tokenizer)
                    let start = monotonicSeconds()
                    tokens = 0
                    for text in texts { tokens += fresh.encode(text).count }
                    encodeSeconds.append(monotonicSeconds() - start)
                    let splitter = PreTokenizer()
                    let splitStart = monotonicSeconds()
                    var pieces = 0
                    for var text in texts { text.withUTF8 { splitter.split($0) { _ in pieces += 1 } } }
                    splitSeconds.append(monotonicSeconds() - splitStart)
                }
                let encode = encodeSeconds.sorted()[encodeSeconds.count / 2]
                let split = splitSeconds.sorted()[splitSeconds.count / 2]
                print(String(format: "encode %.2f MB/s  (%d documents, %.1f MB, %d tokens, %.2f bytes/token; median of %d)",
                             bytes / encode / 1e6, texts.count, bytes / 1e6, tokens, bytes / Double(max(tokens, 1)), encodeSeconds.count))
                print(String(format: "pre-tokenize %.2f MB/s", bytes / split / 1e6))
            }
        }
    }
}
