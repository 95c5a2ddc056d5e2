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
            The run config is a pretraining config whose data.train / data.eval are JSONL samples, \
            with an sft: section (format, template, masking, truncation) and optionally lora:. A \
            checkpoint with LoRA adapters (import-hf --adapter, or a LoRA run) trains them further. \
            Samples are rendered with the tokenizer's chat template, the loss taken on the \
            assistant turns, packed into seq_len rows. Docs: docs/sft.md. Example: \
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
                guard var source = initFrom ?? sft.initFrom else {
                    throw JobError("give the checkpoint to fine-tune: --init-from CHECKPOINT or sft.init_from")
                }
                // A run directory stands for its checkpoints, as for generate, serve and eval.
                let runCheckpoints = (source as NSString).appendingPathComponent("checkpoints")
                if FileManager.default.fileExists(atPath: runCheckpoints) { source = runCheckpoints }
                // A checkpoint with LoRA adapters (a LoRA run's, or a PEFT adapter imported) continues them.
                let configured = settings.lora
                settings.lora = try PeftAdapter.continuing(configured, from: CheckpointReader.locate(source))
                if configured == nil, let lora = settings.lora {
                    log.info("sft: training the adapters of \(source) further (r \(lora.rank), lora_alpha \(lora.alpha), \(lora.targets.map(\.moduleName).joined(separator: ", ")), from its adapter_config.json)")
                }
                let mesh = try TrainingCommandSupport.mesh(settings, world: world)
                let data = try SFTData(settings: settings, sft: sft, checkpoint: source, tokenizer: tokenizer)
                return (settings, mesh, data, source)
            }
            log.info("sft: \(data.summary(settings.data.train))")
            let degree = mesh.dataContext.size, rank = mesh.dataContext.rank
            let train = settings.train
            let trainBatches = SFTBatches(data.train, globalBatchSize: train.globalBatchSize, microBatchSize: train.microBatchSize,
                                          dataParallelDegree: degree, rank: rank, shuffle: settings.data.shuffle, seed: UInt64(train.seed))
            let evalBatches = data.eval.map {
                SFTBatches($0, globalBatchSize: train.globalBatchSize, microBatchSize: train.microBatchSize,
                           dataParallelDegree: degree, rank: rank, shuffle: false, seed: 0)
            }
            let trainer = try world.collectively {
                try Trainer(config: settings, objective: MaskedNextTokenObjective(normalization: .tokens), mesh: mesh, threads: threads, log: log)
            }
            let start: Int = try world.collectively {
                let resuming = try trainer.resumeFromLatest()
                if resume && resuming == nil { throw JobError("--resume: \(trainer.checkpointDirectory) holds no loadable checkpoint") }
                return try resuming ?? TrainingCommandSupport.startStep(trainer, initFrom: source, resumeFrom: nil, resume: false,
                                                                         label: "sft", log: log)
            }
            var extras = try world.collectively {
                try CheckpointExtras(config: settings, tokenizer: data.tokenizer.identity, tokenizerFile: data.tokenizerFile)
            }
            extras.files["chat_template.jinja"] = Data(data.template.utf8)
            try TrainingCommandSupport.train(trainer, label: "sft", start: start, trainBatches: trainBatches,
                                             evalBatches: evalBatches, extras: extras, context: context)
        }
    }
}

/// The SFT run's samples: read, rendered with the chat template, tokenized and packed — the same
/// on every rank (each reads the files; sets this size fit in memory).
struct SFTData {
    let tokenizer: any Tokenizer
    /// The tokenizer.json to save with the checkpoints (nil for the byte tokenizer).
    let tokenizerFile: String?
    /// The chat template text used (saved with the checkpoints, for serving).
    let template: String
    let templateSource: String
    let train: SFTPackedRows
    let eval: SFTPackedRows?

    init(settings: PretrainConfig, sft: SFTSection, checkpoint: String, tokenizer name: String?) throws {
        let step = try CheckpointReader.locate(checkpoint).stepDirectory
        let saved = step + "/" + CheckpointExtras.tokenizerName
        guard let name = name ?? (FileManager.default.fileExists(atPath: saved) ? saved : nil) else {
            throw JobError("\(step) has no tokenizer.json: SFT renders text with the tokenizer the model was trained with (give it with --tokenizer, import it with the model, or pretrain with --tokenizer-json)")
        }
        tokenizerFile = name == "bytes" ? nil : name
        let tokenizer = try TokenizerLoader.load(name)
        self.tokenizer = tokenizer
        guard tokenizer.vocabSize <= settings.model.vocabSize else {
            throw JobError("tokenizer \(name) has \(tokenizer.vocabSize) ids but model.vocab_size is \(settings.model.vocabSize)")
        }
        var specialTokens: [String: String] = [:]
        switch sft.template {
        case "chatml":
            (template, templateSource) = (SFTTokenization.chatML, "ChatML (built in)")
        case "auto":
            if let own = try? TokenizerChatTemplates.load(directory: step) {
                (template, templateSource) = (try own.template(), "the tokenizer's own, from \(step)")
                specialTokens = own.specialTokens
            } else {
                (template, templateSource) = (SFTTokenization.chatML, "ChatML (the tokenizer has none)")
            }
        default:
            guard let text = FileManager.default.contents(atPath: sft.template).flatMap({ String(data: $0, encoding: .utf8) }) else {
                throw JobError("sft.template \(sft.template): no such file (give auto, chatml or a .jinja file)")
            }
            (template, templateSource) = (text, sft.template)
        }
        let tokenization = SFTTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: self.template),
                                           specialTokens: specialTokens, options: sft.options)
        func pack(_ path: String) throws -> SFTPackedRows {
            let reader = try SFTRecordReader(path: path, format: sft.format, tags: sft.tags)
            var samples: [TokenizedSample] = []
            while let sample = try reader.next() { samples.append(try tokenization.tokenize(sample)) }
            let packed = SFTPackedRows(samples, sequenceLength: settings.train.seqLen, truncation: sft.truncation,
                                       paddingId: tokenizer.eosId)
            guard !packed.rows.isEmpty else {
                throw JobError("\(path): no sample fits train.seq_len \(settings.train.seqLen) with a token to learn (\(packed.droppedCount) dropped)")
            }
            return packed
        }
        let train = try pack(settings.data.train)
        let eval = try settings.data.eval.map(pack)
        self.train = train
        self.eval = eval
    }

    func summary(_ path: String) -> String {
        let supervised = train.samples.reduce(0) { $0 + $1.supervisedCount }
        var text = "\(train.samples.count) samples from \(path) (\(train.droppedCount) dropped as too long or with nothing to learn, "
            + "\(train.truncatedCount) truncated), \(supervised) supervised tokens, packed into \(train.rows.count) rows of "
            + "\(train.sequenceLength) (\(String(format: "%.1f", 100 * train.efficiency))% of slots used); template: \(templateSource)"
        if let eval { text += "; eval: \(eval.samples.count) samples in \(eval.rows.count) rows" }
        return text
    }
}
