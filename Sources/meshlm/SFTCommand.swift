import ArgumentParser
import Checkpoint
import DataPipeline
import Foundation
import Model
import Runtime
import Tensors
import Training

struct SFTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Supervised fine-tuning of a checkpoint on chat or prompt/completion JSONL, full or LoRA, on any mesh.",
        discussion: """
            The run config is a pretraining config whose data.train / data.eval are JSONL samples \
            (or directories of them tokenized by meshlm data sft-tokenize), with an sft: section \
            (format, template, masking, truncation) and optionally lora:. A checkpoint with LoRA \
            adapters (import-hf --adapter, or a LoRA run) trains them further. Samples are \
            rendered with the tokenizer's chat template, the loss taken on the assistant turns, \
            packed into seq_len rows. Docs: docs/sft.md. Example: \
            mpirun -np 2 meshlm sft --config configs/sft/tiny-lora.yaml --init-from runs/tiny
            """)

    @OptionGroup var job: JobOptions
    @Option(help: "The run config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config key: section.key=value (repeatable).") var overrides: [String] = []
    @Option(name: .customLong("init-from"), help: "The checkpoint to fine-tune (default: sft.init_from); its tokenizer.json and chat template are used.")
    var initFrom: String?
    @Option(help: "The tokenizer: a tokenizer.json, or bytes (default: the checkpoint's tokenizer.json).") var tokenizer: String?
    @Flag(help: "Resume from the run's newest loadable checkpoint and fail if there is none.") var resume = false

    func run() throws {
        try job.runJob { context in
            let world = context.world, log = context.log
            let threads = KernelThreads(count: context.threads)
            let (settings, mesh, data, source) = try world.collectively {
                var settings = try ConfigLoader.load(PretrainConfig.self, path: config, overrides: overrides, includes: ["model"])
                guard let sft = settings.sft else { throw JobError("\(config): an sft: section is required (docs/sft.md)") }
                // Packed samples must not attend to each other.
                settings.train.documentMasking = true
                guard let given = initFrom ?? sft.initFrom else {
                    throw JobError("give the checkpoint to fine-tune: --init-from CHECKPOINT or sft.init_from")
                }
                let source = try TrainingCommandSupport.fineTuningSource(given, settings: &settings, label: "sft", log: log)
                let mesh = try TrainingCommandSupport.mesh(settings, world: world)
                let data = try SFTData(settings: settings, sft: sft, checkpoint: source, tokenizer: tokenizer)
                return (settings, mesh, data, source)
            }
            log.info("sft: \(data.summary(settings.data.train))")
            let trainer = try world.collectively {
                try Trainer(config: settings, objective: MaskedNextTokenObjective(normalization: .tokens), mesh: mesh, threads: threads, log: log)
            }
            let start = try TrainingCommandSupport.fineTuningStart(trainer, source: source, resume: resume, label: "sft", world: world, log: log)
            try TrainingCommandSupport.fineTune(trainer, label: "sft", start: start, train: data.train, eval: data.eval, chat: data.chat,
                                                context: context)
        }
    }
}

/// The SFT run's samples: read, rendered with the chat template, tokenized and packed — the same
/// on every rank. A JSONL file is read whole into memory (small sets); a directory made by
/// `meshlm data sft-tokenize` is packed from its samples' lengths and read back per batch, after
/// its manifest is checked against this run's tokenizer, template, masking and seq_len.
struct SFTData {
    let chat: SFTChatSetup
    let train: SFTPackedRows
    let eval: SFTPackedRows?

    init(settings: PretrainConfig, sft: SFTSection, checkpoint: String, tokenizer name: String?) throws {
        let chat = try SFTChatSetup(sft: sft, checkpoint: checkpoint, tokenizer: name, vocabSize: settings.model.vocabSize)
        self.chat = chat
        let tokenization = try chat.tokenization(sft)
        let sequenceLength = settings.train.seqLen
        func pack(_ path: String) throws -> SFTPackedRows {
            let packed: SFTPackedRows
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                let samples = try SFTShardSet(directory: path)
                try samples.check(tokenizer: chat.tokenizer.identity, run: chat.shardSettings(sft, sequenceLength: sequenceLength))
                packed = SFTPackedRows(fitted: samples, sequenceLength: sequenceLength, droppedCount: samples.settings.droppedSamples,
                                       truncatedCount: samples.settings.truncatedSamples,
                                       supervisedCount: samples.settings.supervisedTokens, paddingId: chat.tokenizer.eosId,
                                       packing: sft.packing)
            } else {
                let reader = try SFTRecordReader(path: path, format: sft.format, tags: sft.tags)
                var samples: [TokenizedSample] = []
                while let sample = try reader.next() { samples.append(try tokenization.tokenize(sample)) }
                packed = SFTPackedRows(samples, sequenceLength: sequenceLength, truncation: sft.truncation, paddingId: chat.tokenizer.eosId,
                                       packing: sft.packing)
            }
            guard !packed.rows.isEmpty else {
                throw JobError("\(path): no sample fits train.seq_len \(sequenceLength) with a token to learn (\(packed.droppedCount) dropped)")
            }
            return packed
        }
        let train = try pack(settings.data.train)
        let eval = try settings.data.eval.map(pack)
        self.train = train
        self.eval = eval
    }

    func summary(_ path: String) -> String {
        var text = "\(train.samples.sampleCount) samples from \(path) (\(train.droppedCount) dropped as too long or with nothing to learn, "
            + "\(train.truncatedCount) truncated), \(train.supervisedCount) supervised tokens, packed into \(train.rows.count) rows of "
            + "\(train.sequenceLength) (\(String(format: "%.1f", 100 * train.efficiency))% of slots used); template: \(chat.templateSource)"
        if let eval { text += "; eval: \(eval.samples.sampleCount) samples in \(eval.rows.count) rows" }
        return text
    }
}
