import ArgumentParser
import DataPipeline
import Foundation
import Runtime
import Training

extension PreferenceShardSettings.Kind: ExpressibleByArgument {}

struct DataPrefTokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pref-tokenize",
        abstract: "Tokenize preference pairs or KTO samples (JSONL) into HDF5 sample shards and manifest.json, for meshlm dpo, reward and kto.",
        discussion: """
            Takes the run's own config: its preference: section (format, tags, template, \
            truncation), train.seq_len, and the checkpoint's tokenizer and chat template \
            (--init-from or preference.init_from, as the run). Pairs (a dpo or reward config) or \
            KTO samples (a kto config; --kind says which when the config has no dpo:, reward: or \
            kto: section) are rendered, masked and fitted to seq_len exactly as the run does it in \
            memory; the shards hold ids, loss masks, sample offsets and a value per sample (a \
            pair's margin, a KTO label), the manifest the settings and fit counts. Give the \
            directory to the run as data.train or data.eval; it refuses one made with other \
            settings. Streaming; under mpirun the files are the same bytes on any number of ranks. \
            Docs: docs/alignment.md.
            """)

    @OptionGroup var job: JobOptions

    @Option(help: "The dpo, reward or kto run config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config key: section.key=value (repeatable).") var overrides: [String] = []
    @Option(name: .long, parsing: .upToNextOption, help: "JSONL files (.jsonl, .jsonl.zst) in order (default: the config's data.train).")
    var input: [String] = []
    @Option(help: "pairs (dpo, reward) or unpaired (kto) (default: by the config's dpo:, reward: or kto: section).")
    var kind: PreferenceShardSettings.Kind?
    @Option(name: .customLong("init-from"), help: "The checkpoint whose tokenizer.json and chat template to use (default: preference.init_from).")
    var initFrom: String?
    @Option(help: "The tokenizer: a tokenizer.json, or bytes (default: the checkpoint's tokenizer.json).") var tokenizer: String?
    @OptionGroup var shards: SampleShardOptions

    /// `--kind`, or the one the config's loss section implies.
    static func kind(_ given: PreferenceShardSettings.Kind?, settings: PretrainConfig, config: String) throws -> PreferenceShardSettings.Kind {
        if let given { return given }
        let pairs = settings.dpo != nil || settings.reward != nil
        guard pairs != (settings.kto != nil) else {
            throw JobError("\(config): \(pairs ? "both a kto: section and a dpo: or reward: section" : "no dpo:, reward: or kto: section"); say which data this is: --kind pairs (dpo, reward) or --kind unpaired (kto)")
        }
        return pairs ? .pairs : .unpaired
    }

    func run() throws {
        try job.runJob { context in
            let world = context.world
            let (settings, preference, dataKind, chat, files) = try world.collectively {
                let settings = try ConfigLoader.load(PretrainConfig.self, path: config, overrides: overrides, includes: ["model"])
                guard let preference = settings.preference else { throw JobError("\(config): a preference: section is required (docs/alignment.md)") }
                let dataKind = try Self.kind(kind, settings: settings, config: config)
                let checkpoint = (initFrom ?? preference.initFrom).map(SFTChatSetup.checkpointSource)
                let chat = try SFTChatSetup(sft: preference.chatSettings, checkpoint: checkpoint, tokenizer: tokenizer,
                                            vocabSize: settings.model.vocabSize)
                return (settings, preference, dataKind, chat, input.isEmpty ? [settings.data.train] : input)
            }
            let start = Date()
            let output = shards.output
            let manifest = try PreferenceSharding.run(files: files, output: output, tokenization: try chat.preferenceTokenization(),
                                                      settings: chat.preferenceShardSettings(preference, kind: dataKind, sequenceLength: settings.train.seqLen),
                                                      options: shards.sharding, world: world)
            guard let manifest, let made = manifest.preference else { return }
            let seconds = max(Date().timeIntervalSince(start), 1e-9)
            let noun = dataKind == .pairs ? "pairs" : "samples"
            var line = "wrote \(made.kept) \(dataKind.noun) (\(manifest.totalDocuments) samples, \(manifest.totalTokens) tokens) in \(manifest.shards.count) shard\(manifest.shards.count == 1 ? "" : "s") to \(output); "
                + made.fitCounts.summary(noun: noun, sequenceLength: made.sequenceLength)
            if let identical = made.identicalSummary { line += "; " + identical }
            context.log.info(line + "; template: \(chat.templateSource)")
            let records = made.kept + made.tooLong + made.unsupervised
            context.log.info(String(format: "%.1f %@/s on %d rank%@", Double(records) / seconds, noun, world.size, world.size == 1 ? "" : "s"))
        }
    }
}
