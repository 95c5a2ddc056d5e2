import ArgumentParser
import Checkpoint
import DataPipeline
import Foundation
import Model
import Runtime
import Tensors
import Training

struct DPOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Align a checkpoint with preference pairs: DPO and its family (IPO, hinge, robust, SimPO, ORPO, RPO), full or LoRA, on any mesh.",
        discussion: """
            The run config is a fine-tuning config whose data.train / data.eval are JSONL preference \
            pairs ({prompt, chosen, rejected}: strings or messages; TRL's and LlamaFactory's layouts), \
            with a preference: section (format, template, truncation, packing, init_from) and a dpo: \
            section (loss_type, beta, …, TRL's names and defaults). The reference model's \
            log-probabilities are computed once before training and cached in RUN/reference/. \
            Docs: docs/alignment.md. Example: mpirun -np 2 meshlm dpo --config configs/dpo/tiny-lora.yaml
            """)

    @OptionGroup var options: PreferenceRunOptions

    func run() throws {
        try options.run(label: "dpo") { settings, preference, checkpoint, tokenizer in
            let objective = PreferenceObjective(loss: try (settings.dpo ?? DPOSection()).loss())
            return PairAlignment(data: try PreferenceData(settings: settings, preference: preference, checkpoint: checkpoint, tokenizer: tokenizer),
                                 objective: objective, usesReference: objective.loss.usesReference)
        }
    }
}

struct RewardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reward",
        abstract: "Train a reward model (a scalar head on a checkpoint) on preference pairs with the Bradley-Terry loss, on any mesh.",
        discussion: """
            The same data and preference: section as meshlm dpo; the model gets a scalar head \
            (model.num_labels 1, started fresh; the language-model head is not loaded) scoring each \
            sequence at its last token; reward: center_rewards_coefficient as TRL. The eval set's \
            accuracy is logged as eval_accuracy. Export with meshlm ckpt export-hf: transformers \
            loads it as …ForSequenceClassification. Docs: docs/alignment.md.
            """)

    @OptionGroup var options: PreferenceRunOptions

    func run() throws {
        try options.run(label: "reward", scoreHead: true) { settings, preference, checkpoint, tokenizer in
            PairAlignment(data: try PreferenceData(settings: settings, preference: preference, checkpoint: checkpoint, tokenizer: tokenizer),
                          objective: RewardObjective(loss: BradleyTerryLoss(centerRewardsCoefficient: settings.reward?.centerRewardsCoefficient)),
                          usesReference: false)
        }
    }
}

struct KTOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kto",
        abstract: "Align a checkpoint with unpaired answers labelled desirable or undesirable (KTO), full or LoRA, on any mesh.",
        discussion: """
            As meshlm dpo, but data.train / data.eval hold {prompt, completion, label} samples             (label a JSON boolean) and the kto: section gives beta, desirable_weight and             undesirable_weight (TRL's names and defaults). The KL estimate z0 of each step is the             policy/reference log-ratio of the batch's mismatched prompt/answer pairs, gathered             over the data-parallel ranks. Docs: docs/alignment.md.
            """)

    @OptionGroup var options: PreferenceRunOptions

    func run() throws {
        try options.run(label: "kto") { settings, preference, checkpoint, tokenizer in
            try UnpairedAlignment(settings: settings, preference: preference, checkpoint: checkpoint, tokenizer: tokenizer)
        }
    }
}

/// What a mode brings to the run `PreferenceRunOptions` makes: its rows, its objective and
/// whether (and how) it uses the reference model's figures.
protocol AlignmentMode {
    var chat: SFTChatSetup { get }
    var objective: any TrainingObjective { get }
    var trainRows: any PackedRowSource { get }
    var evalRows: (any PackedRowSource)? { get }
    var usesReference: Bool { get }
    func summary(_ path: String) -> String
    /// Fills in the reference figures, from the cache or `pass`.
    mutating func attachReferences(_ pass: ReferencePass) throws
}

/// DPO's family and reward models: preference pairs.
struct PairAlignment: AlignmentMode {
    var data: PreferenceData
    let objective: any TrainingObjective
    let usesReference: Bool

    var chat: SFTChatSetup { data.chat }
    var trainRows: any PackedRowSource { data.train }
    var evalRows: (any PackedRowSource)? { data.eval }
    func summary(_ path: String) -> String { data.summary(path) }

    mutating func attachReferences(_ pass: ReferencePass) throws {
        data.train.references = try pass.run(data.train, name: "train", inTrainingOrder: true)
        if let rows = data.eval { data.eval?.references = try pass.run(rows, name: "eval") }
    }
}

/// KTO: unpaired samples, with their mismatched sequences for the KL estimate (train samples
/// first, then eval samples, whose indices are offset by the train count).
struct UnpairedAlignment: AlignmentMode {
    let chat: SFTChatSetup
    var train: UnpairedPackedRows
    var eval: UnpairedPackedRows?
    let mismatched: MismatchedSequences
    let objective: any TrainingObjective
    let counts: String

    init(settings: PretrainConfig, preference: PreferenceSection, checkpoint: String, tokenizer name: String?) throws {
        let chat = try SFTChatSetup(sft: preference.chatSettings, checkpoint: checkpoint, tokenizer: name, vocabSize: settings.model.vocabSize)
        self.chat = chat
        let tokenization = try chat.preferenceTokenization()
        let sequenceLength = settings.train.seqLen
        var fitCounts = PreferenceFitCounts()
        func read(_ path: String) throws -> [TokenizedUnpaired] {
            var samples: [TokenizedUnpaired] = []
            if let shards = try PreferenceData.shards(path, kind: .unpaired, chat: chat, preference: preference, sequenceLength: sequenceLength) {
                samples = try shards.unpairedSamples()
                fitCounts.add(shards.settings.fitCounts)
            } else {
                let reader = try UnpairedRecordReader(path: path)
                while let sample = try reader.next() {
                    if let fitted = fitCounts.count(try tokenization.tokenize(sample).fitted(to: sequenceLength, truncation: preference.truncation)) {
                        samples.append(fitted)
                    }
                }
            }
            guard !samples.isEmpty else { throw JobError("\(path): no sample fits train.seq_len \(sequenceLength) with an answer token to learn") }
            return samples
        }
        let trainSamples = try read(settings.data.train)
        let evalSamples = try settings.data.eval.map(read) ?? []
        counts = fitCounts.summary(noun: "samples", sequenceLength: sequenceLength)
        mismatched = MismatchedSequences(samples: trainSamples + evalSamples, sequenceLength: sequenceLength,
                                         rowsPerBatch: settings.train.microBatchSize, paddingId: chat.tokenizer.eosId)
        train = UnpairedPackedRows(trainSamples, sequenceLength: sequenceLength, paddingId: chat.tokenizer.eosId, packing: preference.packing)
        eval = evalSamples.isEmpty ? nil
            : UnpairedPackedRows(evalSamples, sequenceLength: sequenceLength, paddingId: chat.tokenizer.eosId, packing: preference.packing,
                                 firstIndex: trainSamples.count)
        let kto = settings.kto ?? KTOSection()
        objective = KTOObjective(loss: KTOLoss(beta: kto.beta, desirableWeight: kto.desirableWeight, undesirableWeight: kto.undesirableWeight),
                                 mismatched: mismatched)
    }

    var trainRows: any PackedRowSource { train }
    var evalRows: (any PackedRowSource)? { eval }
    var usesReference: Bool { true }

    func summary(_ path: String) -> String {
        let desirable = train.samples.filter(\.desirable).count
        var text = "\(path): \(counts) (\(desirable) desirable, \(train.samples.count - desirable) undesirable in train); packed into "
            + "\(train.rows.count) rows of \(train.sequenceLength); template: \(chat.templateSource)"
        if let eval { text += "; eval: \(eval.samples.count) samples in \(eval.rows.count) rows" }
        return text
    }

    /// Each set's samples and mismatched sequences scored as pairs (answer first).
    mutating func attachReferences(_ pass: ReferencePass) throws {
        var mismatchedReferences: [Double] = []
        for (name, rows) in [("train", train), ("eval", eval)] {
            guard let rows else { continue }
            let figures = try pass.run(rows.referencePairs(mismatched), name: name)
            let answers = stride(from: 0, to: figures.count, by: 2).map { figures[$0] }
            mismatchedReferences += stride(from: 1, to: figures.count, by: 2).map { figures[$0] }
            if name == "train" { train.references = answers } else { eval?.references = answers }
        }
        mismatched.references = mismatchedReferences
    }
}

/// What `meshlm dpo`, `meshlm reward` and `meshlm kto` share: options, the pairs, the trainer, the reference
/// pass, the run.
struct PreferenceRunOptions: ParsableArguments {
    @OptionGroup var job: JobOptions
    @Option(help: "The run config (YAML).") var config: String
    @Option(name: .customLong("set"), help: "Override a config key: section.key=value (repeatable).") var overrides: [String] = []
    @Option(name: .customLong("init-from"), help: "The checkpoint to align (default: preference.init_from); its tokenizer.json and chat template are used.")
    var initFrom: String?
    @Option(help: "The tokenizer: a tokenizer.json, or bytes (default: the checkpoint's tokenizer.json).") var tokenizer: String?
    @Flag(help: "Resume from the run's newest loadable checkpoint and fail if there is none.") var resume = false

    /// Makes a mode's data and objective from the run config, its `preference:` section, the
    /// starting checkpoint and `--tokenizer`.
    typealias ModeMaker = (PretrainConfig, PreferenceSection, String, String?) throws -> any AlignmentMode

    func run(label: String, scoreHead: Bool = false, mode makeMode: @escaping ModeMaker) throws {
        try job.runJob { context in try run(context, label: label, scoreHead: scoreHead, mode: makeMode) }
    }

    /// The setup agreed by every rank.
    private struct Setup {
        let settings: PretrainConfig
        let mesh: DeviceMesh
        let mode: any AlignmentMode
        let source: String
    }

    private func run(_ context: JobContext, label: String, scoreHead: Bool, mode makeMode: ModeMaker) throws {
        let world = context.world, log = context.log
        let threads = KernelThreads(count: context.threads)
        let setup: Setup = try world.collectively {
            var settings = try ConfigLoader.load(PretrainConfig.self, path: config, overrides: overrides, includes: ["model"])
            guard let preference = settings.preference else {
                throw JobError("\(config): a preference: section is required (docs/alignment.md)")
            }
            // Packed pairs must not attend to each other, nor chosen to rejected.
            settings.train.documentMasking = true
            if scoreHead { settings.model.numLabels = 1 }
            guard let given = initFrom ?? preference.initFrom else {
                throw JobError("give the checkpoint to align: --init-from CHECKPOINT or preference.init_from")
            }
            let source = try TrainingCommandSupport.fineTuningSource(given, settings: &settings, label: label, log: log)
            let mesh = try TrainingCommandSupport.mesh(settings, world: world)
            return Setup(settings: settings, mesh: mesh, mode: try makeMode(settings, preference, source, tokenizer), source: source)
        }
        let (settings, mesh, source) = (setup.settings, setup.mesh, setup.source)
        var mode = setup.mode
        let objective = mode.objective
        log.info("\(label): \(mode.summary(settings.data.train))")
        let train = settings.train
        let trainer = try world.collectively {
            try Trainer(config: settings, objective: objective, mesh: mesh, threads: threads, log: log)
        }
        let start = try TrainingCommandSupport.fineTuningStart(trainer, source: source, resume: resume, label: label, world: world, log: log)
        if mode.usesReference {
            let given = settings.dpo?.reference ?? settings.kto?.reference
            let reference = given.map(SFTChatSetup.checkpointSource) ?? source
            // The policy before its first step is the reference (TRL's copy of the starting
            // model; under LoRA the base with its fresh adapters, which add nothing).
            let policyIsReference = start == 0 && given == nil
            let pass = try ReferencePass(checkpoint: reference, settings: settings, mesh: mesh, threads: threads, log: log,
                                         policy: policyIsReference ? trainer.parallelModel : nil)
            try mode.attachReferences(pass)
        }
        let watch = objective is PreferenceObjective ? DisplacementWatch(blockSize: train.logInterval, log: log) : nil
        try TrainingCommandSupport.fineTune(trainer, label: label, start: start, train: mode.trainRows, eval: mode.evalRows,
                                            chat: mode.chat, context: context, configure: { run in
            // The starting model's eval figures (TRL's eval_on_start): the "before" of every metric.
            run.evaluatesAtStart = true
            if let watch { run.observer = watch.observe }
        })
    }
}

/// The reference model's pass over the pairs (`PreferenceReference`): the trainer's own model
/// before its first step when that is the reference, else a forward-only model loaded from the
/// reference checkpoint, built only if some figures are not cached yet and released after.
struct ReferencePass {
    let checkpoint: String
    let settings: PretrainConfig
    let mesh: DeviceMesh
    let threads: KernelThreads
    let log: Log
    let policy: ParallelModel?
    let identity: Data
    private let forward: Lazy

    /// A forward-only model made on first use.
    final class Lazy {
        var model: ForwardModel?
    }

    init(checkpoint: String, settings: PretrainConfig, mesh: DeviceMesh, threads: KernelThreads, log: Log, policy: ParallelModel?) throws {
        self.checkpoint = checkpoint
        self.settings = settings
        self.mesh = mesh
        self.threads = threads
        self.log = log
        self.policy = policy
        let step = try mesh.world.collectively { try CheckpointReader.locate(checkpoint).stepDirectory }
        guard let index = FileManager.default.contents(atPath: step + "/" + CheckpointFiles.indexName) else {
            throw JobError("dpo: cannot read \(step)/\(CheckpointFiles.indexName) (the reference model's checkpoint)")
        }
        identity = index
        forward = Lazy()
    }

    /// `rows`' reference figures, from the cache or computed.
    ///
    /// Rows are scored in the micro-batches the first epoch trains them in (`inTrainingOrder`:
    /// the run's seeded order; otherwise in order, as eval reads them), each row at the same place
    /// in the same call: OpenBLAS's AVX2 kernels round a row's product differently at another
    /// place in the call, and this way a policy that starts as the reference scores exactly
    /// its figures at step 0 (log-ratios 0) on every CPU.
    func run(_ rows: PreferencePackedRows, name: String, inTrainingOrder: Bool = false) throws -> [Double] {
        let cache = PreferenceReference(directory: settings.run.dir + "/reference", name: name, rows: rows, identity: identity)
        let train = settings.train
        let batchesPerCall = max(1, train.globalBatchSize / (train.microBatchSize * mesh.dataContext.size))
        var order = Array(rows.rows.indices)
        if inTrainingOrder && settings.data.shuffle {
            let permutation = SamplePermutation(count: rows.rows.count, seed: UInt64(train.seed), epoch: 0)
            order = order.map { permutation[$0] }
        }
        // Built on first need only: a complete cache (a resumed run) loads no model.
        func model() throws -> ParallelModel {
            if let policy { return policy }
            if let made = forward.model { return made.parallelModel }
            let made = try mesh.world.collectively {
                let made = try ForwardModel(config: settings.model, microBatchSize: train.microBatchSize, sequenceLength: train.seqLen,
                                            parallel: settings.parallel, mesh: mesh, threads: threads)
                try made.loadParameters(from: checkpoint, log: log)
                return made
            }
            forward.model = made
            return made.parallelModel
        }
        let outcome = try cache.compute(rows, order: order, model: model, rowsPerBatch: train.microBatchSize, batchesPerCall: batchesPerCall,
                                        dataCommunicator: mesh.dataContext, world: mesh.world)
        log.info(String(format: "reference log-probabilities (%@, %d pairs): %d rows from %@, %d scored in %.1f s",
                        name, rows.pairs.count, outcome.cachedRows, cache.path, outcome.scoredRows, outcome.seconds))
        return outcome.references
    }
}

/// The run's preference pairs: read, rendered with the chat template, tokenized, fitted and
/// packed — the same on every rank. A directory made by `meshlm data pref-tokenize` gives the
/// same pairs already tokenized and fitted (read into memory), after its manifest is checked.
struct PreferenceData {
    let chat: SFTChatSetup
    var train: PreferencePackedRows
    var eval: PreferencePackedRows?
    let notes: [String]

    init(settings: PretrainConfig, preference: PreferenceSection, checkpoint: String, tokenizer name: String?) throws {
        let chatSettings = preference.chatSettings
        let chat = try SFTChatSetup(sft: chatSettings, checkpoint: checkpoint, tokenizer: name, vocabSize: settings.model.vocabSize)
        self.chat = chat
        let tokenization = try chat.preferenceTokenization()
        let sequenceLength = settings.train.seqLen
        var notes: [String] = []
        func pack(_ path: String) throws -> PreferencePackedRows {
            let packed: PreferencePackedRows
            if let shards = try Self.shards(path, kind: .pairs, chat: chat, preference: preference, sequenceLength: sequenceLength) {
                if let identical = shards.settings.identicalSummary { notes.append(identical) }
                packed = PreferencePackedRows(fitted: try shards.pairs(), fitCounts: shards.settings.fitCounts, sequenceLength: sequenceLength,
                                              paddingId: chat.tokenizer.eosId, packing: preference.packing)
            } else {
                let reader = try PreferenceRecordReader(path: path, format: preference.format, tags: preference.tags)
                var pairs: [TokenizedPair] = []
                while let pair = try reader.next() { pairs.append(try tokenization.tokenize(pair)) }
                if let identical = reader.identicalSummary { notes.append(identical) }
                guard !pairs.isEmpty else {
                    throw JobError("\(path): holds no preference pairs\(reader.identicalSummary.map { " (\($0))" } ?? " (the file has no records)")")
                }
                packed = PreferencePackedRows(pairs, sequenceLength: sequenceLength, truncation: preference.truncation,
                                              paddingId: chat.tokenizer.eosId, packing: preference.packing)
            }
            guard !packed.rows.isEmpty else {
                throw JobError("\(path): no pair fits train.seq_len \(sequenceLength) with an answer token to learn on each side (\(packed.fitCounts.summary(noun: "pairs", sequenceLength: sequenceLength)))")
            }
            return packed
        }
        train = try pack(settings.data.train)
        eval = try settings.data.eval.map(pack)
        self.notes = notes
    }

    /// `path` opened as a directory of `meshlm data pref-tokenize` and checked against this run
    /// (tokenizer, template, format, truncation, seq_len), or nil when it is a file (JSONL).
    /// The samples are then read into memory: what the directory saves is the reading,
    /// rendering and tokenizing.
    static func shards(_ path: String, kind: PreferenceShardSettings.Kind, chat: SFTChatSetup, preference: PreferenceSection,
                       sequenceLength: Int) throws -> PreferenceShardSet? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        let shards = try PreferenceShardSet(directory: path, kind: kind)
        try shards.check(tokenizer: chat.tokenizer.identity,
                         run: chat.preferenceShardSettings(preference, kind: kind, sequenceLength: sequenceLength))
        return shards
    }

    func summary(_ path: String) -> String {
        var text = "\(path): \(train.fitCounts.summary(noun: "pairs", sequenceLength: train.sequenceLength)); packed into \(train.rows.count) rows of \(train.sequenceLength) "
            + "(\(String(format: "%.1f", 100 * train.efficiency))% of slots used); template: \(chat.templateSource)"
        if let eval { text += "; eval: \(eval.pairs.count) pairs in \(eval.rows.count) rows" }
        for note in notes { text += "; " + note }
        return text
    }
}
