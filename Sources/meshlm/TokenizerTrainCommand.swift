import ArgumentParser
import DataPipeline
import Foundation
import Runtime

struct TokenizerTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a byte-level BPE tokenizer (GPT-4/Llama-3 split pattern) and write a Hugging Face tokenizer.json.",
        discussion: """
            Every rank pre-tokenizes and counts the pieces of its share of the documents (document i goes \
            to rank i mod ranks); the counts are summed across ranks, and rank 0 learns the merges and \
            writes the file. The result is the same file on any number of ranks. Ties between equally \
            frequent pairs go to the pair with the smaller left id, then the smaller right id. An existing \
            --output (unless --overwrite) or one that cannot be written is refused before any counting; \
            inputs without text are refused once counted, and nothing is written.
            """)

    @OptionGroup var job: JobOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories (.jsonl, .jsonl.zst, .txt).") var input: [String] = []
    @Option(name: .customLong("vocab-size"), parsing: .unconditional, help: "Total ids: 256 bytes + merges + special tokens.") var vocabSize: Int
    @Option(name: .long, help: "The tokenizer.json to write (missing parent directories are made; an existing file is refused unless --overwrite).") var output: String
    @Option(name: .customLong("special-tokens"), parsing: .upToNextOption,
            help: "Special tokens, given the last ids in this order (must include <|end_of_text|> or <|endoftext|>).")
    var specialTokens: [String] = BPEModel.defaultSpecialTokens
    @Option(name: .customLong("min-frequency"), parsing: .unconditional, help: "Stop when the most frequent pair occurs fewer times than this.") var minFrequency = 2
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Flag(name: .long, help: "Replace an existing --output file.") var overwrite = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
    }

    func run() throws {
        try job.runJob { context in
            let world = context.world
            let (trainer, files) = try world.collectively {
                let trainer = try BPETrainer(options: .init(vocabularySize: vocabSize, specialTokens: specialTokens,
                                                            minimumFrequency: minFrequency))
                guard specialTokens.contains(where: { ["<|end_of_text|>", "<|endoftext|>", "</s>"].contains($0) }) else {
                    throw DataError("--special-tokens must include an end-of-text token (<|end_of_text|>, <|endoftext|> or </s>): shards end every document with it")
                }
                if world.rank == 0 { try checkOutput() }
                let (files, ignored) = try DocumentReader.expand(input)
                if ignored > 0 { context.log.warning("skipped \(ignored) files that are not .jsonl, .jsonl.zst or .txt") }
                return (trainer, files)
            }
            let start = Date()
            let progress = world.rank == 0 ? ProgressLine(label: "count pieces", total: TextSharding.inputBytes(files), unit: "B", log: context.log) : nil
            var index = 0
            let counts = try world.collectively {
                let counts = PieceCounts()
                for file in files {
                    let reader = try DocumentReader(path: file, textField: textField)
                    var reported = 0
                    while let document = try reader.next() {
                        if index % world.size == world.rank { counts.add(document: document.text) }
                        index += 1
                        progress?.advance(by: reader.fileBytesRead - reported)
                        reported = reader.fileBytesRead
                    }
                }
                progress?.finish()
                return counts
            }
            let total = try counts.merged(across: world)
            // Every rank read every document and holds the same sum: all throw, one message.
            try world.collectively {
                guard total.bytesCounted == 0 else { return }
                throw TextSharding.noTextError(files: files, documents: index, task: "train on", textField: textField)
            }
            let counted = Date()
            try world.collectively {
                guard world.rank == 0 else { return }
                context.log.info("counted \(total.count) distinct pieces in \(total.bytesCounted) bytes in \(String(format: "%.2f", counted.timeIntervalSince(start))) s")
                let merges = ProgressLine(label: "merges", total: vocabSize - 256 - specialTokens.count, unit: "merges", log: context.log)
                var reported = 0
                let model = trainer.train(total) { done in
                    merges.advance(by: done - reported)
                    reported = done
                }
                merges.finish()
                let parent = OutputPath.parent(of: output)
                if !parent.isEmpty, !FileManager.default.fileExists(atPath: parent) {
                    do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
                        throw DataError("\(parent): cannot create the directory of --output: \(FileProblem.reason(error, path: parent)); choose another --output")
                    }
                }
                try TokenizerJSON.write(model, to: output)
                let note = model.count < vocabSize ? " (fewer than --vocab-size \(vocabSize): no pair occurs --min-frequency \(minFrequency) times)" : ""
                context.log.info("wrote \(output): \(model.count) ids\(note), \(model.merges.count) merges, \(model.specialTokens.count) special tokens; merges took \(String(format: "%.2f", Date().timeIntervalSince(counted))) s, total \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
            }
        }
    }

    /// Refuses, before any counting, an --output that exists (unless --overwrite), is a
    /// directory, or cannot be made; missing parent directories are made when the tokenizer is
    /// written.
    private func checkOutput() throws(DataError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) {
            if isDirectory.boolValue { throw DataError("\(output): is a directory (--output names the tokenizer.json file to write)") }
            if !overwrite { throw DataError("\(output): exists (pass --overwrite to replace it, or choose another --output)") }
        }
        try OutputPath.checkCreatable(output)
    }
}
