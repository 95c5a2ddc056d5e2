import ArgumentParser
import DataPipeline
import Foundation
import Runtime
import Training

struct DataTokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenize documents (JSONL, .jsonl.zst, .txt) into HDF5 token shards and manifest.json.",
        discussion: """
            Directories are read recursively (their .jsonl, .jsonl.zst and .txt files, sorted by path). \
            Every document is followed by the tokenizer's EOS id. Token ids are uint16 when the vocabulary \
            has at most 65,536 ids, else uint32. The shards are written under temporary names and \
            manifest.json last: a directory without it is not a dataset. A failed run removes the shards it \
            wrote; a killed one (kill -9) is resumed by rerunning the same command, which keeps its finished \
            shards (OUT/.progress/tokenize records them). Inputs without text are an error. Under mpirun every rank tokenizes a share of each batch of documents and rank 0 writes \
            the shards in document order: the output is the same bytes on any number of ranks. \
            `shard-text` is the old name of this command.
            """,
        aliases: ["shard-text"])

    @OptionGroup var job: JobOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories.") var input: [String] = []
    @Option(name: .long, help: "The shard directory to write (created; must be empty unless --overwrite; a killed run there is resumed).") var output: String
    @Option(name: .long, help: "Tokenizer: 'bytes' or the path of a tokenizer.json (byte-level BPE).") var tokenizer = "bytes"
    @Option(name: .customLong("shard-tokens"), parsing: .unconditional, help: "Target tokens per shard file.") var shardTokens = 1 << 25
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Option(name: .long, parsing: .unconditional, help: "Deflate level of the token chunks, 0 (none) to 9.") var deflate = 0
    @Flag(name: .long, help: "Replace the manifest and shards of a non-empty output directory.") var overwrite = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
        if shardTokens < 1 { throw ValidationError("--shard-tokens must be at least 1, got \(shardTokens)") }
        if !(0...9).contains(deflate) { throw ValidationError("--deflate must be 0 to 9, got \(deflate)") }
    }

    func run() throws {
        try job.runJob { context in
            let world = context.world
            let (tokenizer, files) = try world.collectively {
                let tokenizer = try TokenizerLoader.load(self.tokenizer)
                let (files, ignored) = try DocumentReader.expand(input)
                if ignored > 0 { context.log.warning("skipped \(ignored) files that are not .jsonl, .jsonl.zst or .txt") }
                return (tokenizer, files)
            }
            let inputBytes = TextSharding.inputBytes(files)
            let progress = world.rank == 0 ? ProgressLine(label: "tokenize", total: inputBytes, unit: "B", log: context.log,
                                                                 secondaryUnit: "docs") : nil
            let options = TextSharding.Options(
                textField: textField,
                writer: TokenShardWriter.Options(shardTokens: shardTokens, deflateLevel: deflate, overwrite: overwrite))
            let start = Date()
            // Input errors happen on every rank at the same document; a failure of rank 0 alone
            // (e.g. a full disk) ends the job through SPMDJob's abort.
            let manifest = try TextSharding.run(files: files, output: output, tokenizer: tokenizer, options: options,
                                                world: world, progress: progress, log: context.log)
            guard let manifest else { return }
            if self.tokenizer != "bytes" {
                // Beside the shards, so pretraining copies it into its checkpoints without a flag
                // and generate/serve/eval find the tokenizer the ids belong to.
                let copy = (output as NSString).appendingPathComponent(CheckpointExtras.tokenizerName)
                guard let data = FileManager.default.contents(atPath: self.tokenizer) else {
                    throw DataError("cannot read \(self.tokenizer) again to copy it beside the shards as \(copy)")
                }
                do { try data.write(to: URL(fileURLWithPath: copy), options: .atomic) } catch {
                    throw DataError("cannot write \(copy): \(error.localizedDescription); check that \(output) is writable")
                }
            }
            let seconds = max(Date().timeIntervalSince(start), 1e-9)
            for input in manifest.inputs where input.documents == 0 {
                context.log.warning("\(input.path): no documents")
            }
            let empty = manifest.inputs.reduce(0) { $0 + $1.emptyDocuments }
            let emptyNote = empty > 0 ? " (\(empty) empty documents not written)" : ""
            context.log.info("wrote \(manifest.totalTokens) tokens of \(manifest.totalDocuments) documents\(emptyNote) in \(manifest.shards.count) shard\(manifest.shards.count == 1 ? "" : "s") to \(output) (tokenizer \(manifest.tokenizer.name), vocab \(manifest.vocabSize), \(manifest.dtype.rawValue))")
            context.log.info(String(format: "%.1f docs/s, %.1f MB/s of input on %d rank%@", Double(manifest.totalDocuments) / seconds,
                                    Double(inputBytes) / seconds / 1e6, world.size, world.size == 1 ? "" : "s"))
        }
    }
}
