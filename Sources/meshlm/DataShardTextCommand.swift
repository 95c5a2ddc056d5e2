import ArgumentParser
import DataPipeline
import Runtime

struct DataShardTextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard-text",
        abstract: "Tokenize documents (JSONL, .jsonl.zst, .txt) into HDF5 token shards and manifest.json.",
        discussion: """
            Directories are read recursively (their .jsonl, .jsonl.zst and .txt files, sorted by path). \
            Every document is followed by the tokenizer's EOS id. The shards are written under temporary \
            names and manifest.json last: a directory without it is not a dataset. A failed run removes \
            the shards it wrote. Under mpirun, rank 0 does all of the work and the other ranks wait.
            """)

    @OptionGroup var job: JobOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Input files or directories.") var input: [String] = []
    @Option(name: .long, help: "The shard directory to write (created; must be empty unless --overwrite).") var output: String
    @Option(name: .long, help: "Tokenizer: \(TokenizerLoader.names.joined(separator: ", ")).") var tokenizer = "bytes"
    @Option(name: .customLong("shard-tokens"), help: "Target tokens per shard file.") var shardTokens = 1 << 25
    @Option(name: .customLong("text-field"), help: "The JSONL field that holds the text.") var textField = "text"
    @Option(name: .long, help: "Deflate level of the token chunks, 0 (none) to 9.") var deflate = 0
    @Flag(name: .long, help: "Replace the manifest and shards of a non-empty output directory.") var overwrite = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("give at least one --input file or directory") }
        if shardTokens < 1 { throw ValidationError("--shard-tokens must be at least 1, got \(shardTokens)") }
        if !(0...9).contains(deflate) { throw ValidationError("--deflate must be 0 to 9, got \(deflate)") }
    }

    func run() throws {
        try job.runJob { context in
            try context.world.collectively {
                guard context.world.rank == 0 else { return }
                let tokenizer = try TokenizerLoader.load(self.tokenizer)
                let (files, ignored) = try DocumentReader.expand(input)
                if ignored > 0 { context.log.warning("skipped \(ignored) files that are not .jsonl, .jsonl.zst or .txt") }
                let progress = ProgressLine(label: "shard-text", total: TextSharding.inputBytes(files), unit: "B", log: context.log)
                let options = TextSharding.Options(
                    textField: textField,
                    writer: TokenShardWriter.Options(shardTokens: shardTokens, deflateLevel: deflate, overwrite: overwrite))
                let manifest = try TextSharding.run(files: files, output: output, tokenizer: tokenizer, options: options,
                                                    progress: progress)
                for input in manifest.inputs where input.documents == 0 {
                    context.log.warning("\(input.path): no documents")
                }
                let empty = manifest.inputs.reduce(0) { $0 + $1.emptyDocuments }
                let emptyNote = empty > 0 ? " (\(empty) empty documents not written)" : ""
                context.log.info("wrote \(manifest.totalTokens) tokens of \(manifest.totalDocuments) documents\(emptyNote) in \(manifest.shards.count) shard\(manifest.shards.count == 1 ? "" : "s") to \(output) (tokenizer \(manifest.tokenizer.name), vocab \(manifest.vocabSize), \(manifest.dtype.rawValue))")
            }
        }
    }
}
