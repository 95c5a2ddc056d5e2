import ArgumentParser
import Foundation
import DataPipeline
import Model
import Parallel
import Runtime
import Tensors
import Training

struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "Pretrain a Llama-style model from token shards on the data-parallel mesh (DP, ZeRO-1/2/3).",
        discussion: "Config keys and defaults: docs/training.md. Example: mpirun -np 2 meshlm pretrain --config configs/pretrain/tiny.yaml")

    @OptionGroup var job: JobOptions
    @Option(help: "The run config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config key: section.key=value (repeatable).") var overrides: [String] = []
    @Flag(help: "Resume from the run's newest loadable checkpoint (RUN/checkpoints) and fail if there is none. Without it a run resumes from one when it exists.")
    var resume = false
    @Option(name: .customLong("resume-from"), help: "Resume from this checkpoint: a step directory, or a checkpoints directory (its newest loadable one).")
    var resumeFrom: String?
    @Option(name: .customLong("init-from"), help: "Start at step 0 from the parameters of this checkpoint (e.g. made by `meshlm ckpt import-hf`); fresh optimizer state.")
    var initFrom: String?
    @Option(name: .customLong("tokenizer-json"), help: "A tokenizer.json to copy into every checkpoint (default: tokenizer.json beside the training shards, if there is one).")
    var tokenizerJSON: String?

    func validate() throws {
        if resume && resumeFrom != nil { throw ValidationError("--resume and --resume-from exclude each other: --resume-from names the checkpoint, --resume uses the run's own") }
        if initFrom != nil && (resume || resumeFrom != nil) { throw ValidationError("--init-from starts a new run at step 0; it cannot be combined with --resume or --resume-from") }
    }

    func run() throws {
        try job.runJob { context in
            let world = context.world, log = context.log
            let threads = KernelThreads(count: context.threads)
            let (settings, mesh, trainBatches, evalBatches) = try world.collectively {
                let settings = try ConfigLoader.load(PretrainConfig.self, path: config, overrides: overrides, includes: ["model"])
                let mesh = try TrainingCommandSupport.mesh(settings, world: world)
                let degree = mesh.dataContext.size, rank = mesh.dataContext.rank
                let trainBatches = try SampledBatches.open(settings.data.train, data: settings.data, train: settings.train,
                                                           dataParallelDegree: degree, rank: rank, shuffle: settings.data.shuffle)
                try Self.checkVocabulary(trainBatches, settings)
                let evalBatches = try settings.data.eval.map { path in
                    let batches = try SampledBatches.open(path, data: settings.data, train: settings.train,
                                                          dataParallelDegree: degree, rank: rank, shuffle: false)
                    try Self.checkVocabulary(batches, settings)
                    return batches
                }
                return (settings, mesh, trainBatches, evalBatches)
            }
            let trainer = try world.collectively { try Trainer(config: settings, mesh: mesh, threads: threads, log: log) }
            // A run with a committed checkpoint continues from it (any dp degree or ZeRO stage).
            let start: Int = try world.collectively {
                try TrainingCommandSupport.startStep(trainer, initFrom: initFrom, resumeFrom: resumeFrom, resume: resume,
                                                     label: "pretrain", log: log)
            }
            let tokenizer = trainBatches.samples.dataset.manifest?.tokenizer
            let besideShards = (settings.data.train as NSString).appendingPathComponent(CheckpointExtras.tokenizerName)
            let tokenizerFile = tokenizerJSON ?? (FileManager.default.fileExists(atPath: besideShards) ? besideShards : nil)
            let extras = try world.collectively {
                try Self.checkTokenizers(settings, train: trainBatches, eval: evalBatches, tokenizerFile: tokenizerFile,
                                         loaded: trainer.loadedCheckpoint)
                return try CheckpointExtras(config: settings, tokenizer: tokenizer, tokenizerFile: tokenizerFile)
            }
            try TrainingCommandSupport.train(trainer, label: "pretrain", start: start, trainBatches: trainBatches,
                                             evalBatches: evalBatches, extras: extras, context: context) { metrics in
                let train = settings.train
                log.info("pretrain: \(settings.model.parameterCount.formatted) parameters; mesh \(mesh.dims); ZeRO stage \(settings.parallel.zeroStage); "
                         + "\(train.globalBatchSize) × \(train.seqLen) tokens per step in micro-batches of \(train.microBatchSize); "
                         + "\(trainBatches.samples.sampleCount) training samples; metrics → \(metrics.path)")
            }
        }
    }

    /// The run's ids all belong to one tokenizer: the eval data's, the tokenizer file saved with
    /// the checkpoints and the checkpoint resumed or initialized from must be the training data's.
    static func checkTokenizers(_ settings: PretrainConfig, train: SampledBatches, eval: SampledBatches?, tokenizerFile: String?,
                                loaded: String?) throws {
        guard let data = train.samples.dataset.manifest?.tokenizer else { return }
        let trainPath = settings.data.train
        if let eval, let evalTokenizer = eval.samples.dataset.manifest?.tokenizer, evalTokenizer.hash != data.hash {
            throw JobError("data.eval \(eval.samples.dataset.path) was tokenized with tokenizer \(CheckpointTokenizer.summary(evalTokenizer)), but data.train \(trainPath) with \(CheckpointTokenizer.summary(data)): tokenize both with the same tokenizer")
        }
        if let tokenizerFile {
            let file = try TokenizerLoader.load(tokenizerFile).identity
            if file.hash != data.hash {
                throw JobError("\(tokenizerFile) is tokenizer \(CheckpointTokenizer.summary(file)), but data.train \(trainPath) was tokenized with \(CheckpointTokenizer.summary(data)): give the tokenizer.json the data was made with (--tokenizer-json)")
            }
        }
        if let loaded {
            try CheckpointTokenizer.checkData(data, dataPath: "data.train \(trainPath)", checkpoint: loaded)
        }
    }

    /// Token ids the model's embedding cannot hold are an error before training, not a crash in it.
    static func checkVocabulary(_ batches: SampledBatches, _ settings: PretrainConfig) throws {
        if let vocabulary = batches.samples.dataset.vocabSize, vocabulary > settings.model.vocabSize {
            throw JobError("\(batches.samples.dataset.path): the data's vocabulary (\(vocabulary) ids) does not fit model.vocab_size \(settings.model.vocabSize)")
        }
    }
}

extension Int {
    /// 1.23M, 45.6k.
    var formatted: String { formatRate(Double(self)) }
}
