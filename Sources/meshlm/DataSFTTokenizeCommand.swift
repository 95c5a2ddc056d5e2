import ArgumentParser
import DataPipeline
import Foundation
import Runtime
import Training

struct DataSFTTokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft-tokenize",
        abstract: "Tokenize SFT samples (chat or prompt/completion JSONL) into HDF5 sample shards and manifest.json, for meshlm sft.",
        discussion: """
            Takes the sft run's own config: its sft: section (format, tags, template, \
            train_on_prompt, mask_history, truncation), train.seq_len, and the checkpoint's \
            tokenizer and chat template (--init-from or sft.init_from, as meshlm sft). Each \
            sample is rendered, masked and fitted to seq_len exactly as meshlm sft does it in \
            memory; the shards hold ids, loss mask and sample offsets, the manifest the settings \
            and counts. Give the directory to meshlm sft as data.train or data.eval; it refuses \
            one made with other settings. Streaming; under mpirun the files are the same bytes on \
            any number of ranks. Docs: docs/sft.md.
            """)

    @OptionGroup var job: JobOptions

    @Option(help: "The sft run config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config key: section.key=value (repeatable).") var overrides: [String] = []
    @Option(name: .long, parsing: .upToNextOption, help: "SFT JSONL files (.jsonl, .jsonl.zst) in order (default: the config's data.train).")
    var input: [String] = []
    @Option(name: .customLong("init-from"), help: "The checkpoint whose tokenizer.json and chat template to use (default: sft.init_from).")
    var initFrom: String?
    @Option(help: "The tokenizer: a tokenizer.json, or bytes (default: the checkpoint's tokenizer.json).") var tokenizer: String?
    @OptionGroup var shards: SampleShardOptions

    func run() throws {
        try job.runJob { context in
            let world = context.world
            let (settings, sft, chat, files) = try world.collectively {
                let settings = try ConfigLoader.load(PretrainConfig.self, path: config, overrides: overrides, includes: ["model"])
                guard let sft = settings.sft else { throw JobError("\(config): an sft: section is required (docs/sft.md)") }
                let checkpoint = (initFrom ?? sft.initFrom).map(SFTChatSetup.checkpointSource)
                let chat = try SFTChatSetup(sft: sft, checkpoint: checkpoint, tokenizer: tokenizer, vocabSize: settings.model.vocabSize)
                return (settings, sft, chat, input.isEmpty ? [settings.data.train] : input)
            }
            let start = Date()
            let inputs = SFTSharding.Inputs(files: files, format: sft.format, tags: sft.tags)
            let output = shards.output
            let manifest = try SFTSharding.run(inputs: inputs, output: output, tokenization: try chat.tokenization(sft),
                                               settings: chat.shardSettings(sft, sequenceLength: settings.train.seqLen),
                                               options: shards.sharding, world: world)
            guard let manifest, let made = manifest.sft else { return }
            let seconds = max(Date().timeIntervalSince(start), 1e-9)
            context.log.info("wrote \(manifest.totalDocuments) samples, \(manifest.totalTokens) tokens (\(made.supervisedTokens) supervised) in \(manifest.shards.count) shard\(manifest.shards.count == 1 ? "" : "s") to \(output); \(made.droppedSamples) dropped as too long or with nothing to learn, \(made.truncatedSamples) truncated to seq_len \(made.sequenceLength); template: \(chat.templateSource)")
            context.log.info(String(format: "%.1f samples/s on %d rank%@", Double(manifest.totalDocuments + made.droppedSamples) / seconds,
                                    world.size, world.size == 1 ? "" : "s"))
        }
    }
}
