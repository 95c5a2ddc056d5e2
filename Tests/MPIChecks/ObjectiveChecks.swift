import Foundation
import Model
import Parallel
import Runtime
import Tensors
import Training

/// `mpi-checks objective OBJECTIVE PP TP ZERO [sp] [freeze] [lora] [qwen2|qwen3]`: trains a small model for 6 steps towards
/// `OBJECTIVE` (`next-token`, `masked-tokens`, `masked-sequences`, `masked-ones`, or `score`: a
/// model with a scalar head regressing `ScoreRegressionObjective`'s targets) on synthetic
/// data on the mesh the degrees give (dp = the rest), and prints `loss STEP VALUE` (and the
/// objective's metrics) from rank 0. Every sample is a function of its global index alone, so
/// every layout trains on the same global batches: tests compare the lines across layouts.
/// With `freeze`, the embedding, layer 0 and layer 1's MLP are frozen, and the check fails
/// unless every frozen tensor ends bitwise at its initial value and the others moved; `lora`
/// adds LoRA adapters (r 4, alpha 8, every projection, B started non-zero so every adapter
/// trains from the first step) and checks the same of the base; `dora` makes them DoRA
/// (`use_dora`), `dropout` adds `lora_dropout: 0.2`, and `loraplus` sets `loraplus_lr_ratio: 16`
/// and checks that step 0 moved B by 16 × the learning rate and A by 1 × (AdamW's first step
/// moves every element by lr·g/(|g| + ε) beside its weight decay). With
/// `qwen2` or `qwen3` the model has that family's layer (qwen3 with head_dim 12 ≠ 32 / 4).
func objectiveChecks(_ world: Communicator, _ log: Log, arguments: [String]) throws {
    guard arguments.count >= 5, let pp = Int(arguments[2]), let tp = Int(arguments[3]), let zero = Int(arguments[4]) else {
        throw JobError("usage: mpi-checks objective next-token|masked-tokens|masked-sequences|masked-ones PP TP ZERO [sp]")
    }
    let sequenceParallel = arguments.dropFirst(5).contains("sp")
    let freeze = arguments.dropFirst(5).contains("freeze")
    let lora = arguments.dropFirst(5).contains("lora")
    let options = Set(arguments.dropFirst(5))
    let loraExtras = (options.contains("dora") ? ", use_dora: true" : "") + (options.contains("dropout") ? ", lora_dropout: 0.2" : "")
        + (options.contains("loraplus") ? ", loraplus_lr_ratio: 16" : "")
    let modelType = arguments.dropFirst(5).first { $0.hasPrefix("qwen") } ?? "llama"
    let objective: any TrainingObjective
    switch arguments[1] {
    case "next-token": objective = NextTokenObjective()
    case "masked-tokens", "masked-ones": objective = MaskedNextTokenObjective(normalization: .tokens)
    case "masked-sequences": objective = MaskedNextTokenObjective(normalization: .sequences)
    case "score": objective = ScoreRegressionObjective()
    default: throw JobError("unknown objective \(arguments[1])")
    }
    let yaml = """
        model: {vocab_size: 97, hidden_size: 32, intermediate_size: 72, num_hidden_layers: 2, num_attention_heads: 4,
                num_key_value_heads: 2, max_position_embeddings: 64, num_labels: \(arguments[1] == "score" ? 1 : 0), model_type: \(modelType)\(modelType == "qwen3" ? ", head_dim: 12" : "")}
        train: {steps: 6, seed: 7, seq_len: 16, global_batch_size: 8, micro_batch_size: 2, document_masking: true,
                freeze: [\(freeze ? "'model.embed_tokens.weight', 'model.layers.0.*', 'model.layers.1.mlp.*'" : "")]}
        optimizer: {lr: 0.01, warmup_steps: 0, schedule: constant}
        data: {train: synthetic}
        parallel: {pp: \(pp), tp: \(tp), zero_stage: \(zero), sequence_parallel: \(sequenceParallel)}
        \(lora ? "lora: {r: 4, lora_alpha: 8, target_modules: [all-linear]\(loraExtras)}" : "")
        """
    let config = try world.collectively { try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: "objective check") }
    let dims = try world.collectively {
        try ParallelDims(worldSize: world.size, pipelineDegree: pp, dataDegree: nil, contextDegree: 1, tensorDegree: tp, expertDegree: 1)
    }
    let mesh = try world.collectively { try DeviceMesh(world: world, dims: dims) }
    let trainer = try world.collectively { try Trainer(config: config, objective: objective, mesh: mesh, threads: .single, log: log) }
    if lora { startAdaptersNonZero(trainer) }
    let weighted = arguments[1] != "masked-ones"
    let source = SyntheticBatches(config: config, dataParallelDegree: mesh.dataContext.size, rank: mesh.dataContext.rank,
                                  weighted: weighted)
    for step in 0..<config.train.steps {
        let before = step == 0 && options.contains("loraplus") ? adapterValues(trainer) : nil
        let result = try trainer.step(step, batches: source.microBatches(step: step))
        if let before { try checkLoRAPlus(trainer, before: before, config: config, learningRate: result.learningRate, world: world, log: log) }
        let metrics = result.metrics.keys.sorted().map { " \($0) \(result.metrics[$0] ?? 0)" }.joined()
        log.info("loss \(step) \(result.loss)\(metrics)")
    }
    let evalLoss = try trainer.evaluate(source.microBatches(step: 1000)).loss
    log.info("eval \(evalLoss)")
    if freeze || lora { try checkFrozen(trainer, config: config, mesh: mesh, world: world, log: log) }
}

/// Every frozen tensor this rank holds is bitwise its initial value; some trained tensor moved.
func checkFrozen(_ trainer: Trainer, config: PretrainConfig, mesh: DeviceMesh, world: Communicator, log: Log) throws {
    let frozen = try config.frozenTensors().union(trainer.parallelModel.frozenTensors)
    let initial = try ParallelModel(config: config.model, shape: ParallelModel.Shape(microBatchSize: 2, sequenceLength: 16, microBatchCount: 1),
                                    parallel: config.parallel, mesh: mesh, threads: .single, trainable: false, lora: config.lora,
                                    seed: UInt64(config.train.seed))
    if config.lora != nil { startAdaptersNonZero(initial) }
    let before = Dictionary(uniqueKeysWithValues: initial.parameters.ownedSlices(.parameters).map { ($0.name, $0) })
    var unchanged = 0, moved = 0
    for slice in trainer.parameters.ownedSlices(.parameters) {
        guard let start = before[slice.name] else { throw JobError("rank \(world.rank): no initial \(slice.name)") }
        let now = UnsafeBufferPointer(start: slice.pointer, count: slice.elements.count)
        let then = UnsafeBufferPointer(start: start.pointer, count: start.elements.count)
        let same = now.elementsEqual(then)
        if frozen.contains(slice.name) {
            guard same else { throw JobError("rank \(world.rank): frozen \(slice.name) changed") }
            unchanged += 1
        } else if !same {
            moved += 1
        }
    }
    let counts = try world.allgather([Int64(unchanged), Int64(moved)])
    let frozenSlices = counts.reduce(0) { $0 + $1[0] }, movedSlices = counts.reduce(0) { $0 + $1[1] }
    guard frozenSlices > 0, movedSlices > 0 else { throw JobError("frozen slices \(frozenSlices), moved \(movedSlices)") }
    // Blocks frozen whole (the embedding, layer 0) hold no gradients and no moments.
    var unfrozen = config
    unfrozen.train.freeze = []
    unfrozen.lora = nil
    let full = try world.collectively { try Trainer(config: unfrozen, mesh: mesh, threads: .single, log: log) }
    let (got, all) = (trainer.parameters.residentBytes, full.parameters.residentBytes)
    let frozenBlock = trainer.layout.blocks.contains { !trainer.layout.trains($0) }
    if frozenBlock {
        // LoRA holds its adapters besides the base, which holds no state.
        let parametersHeld = config.lora == nil ? got.parameters == all.parameters : got.parameters > all.parameters
        guard got.gradients < all.gradients, got.optimizerState < all.optimizerState, parametersHeld else {
            throw JobError("rank \(world.rank): frozen blocks still hold state: \(got) against \(all) unfrozen")
        }
    }
    log.info("frozen tensors unchanged (\(frozenSlices) slices); \(movedSlices) trained slices moved")
}

/// Every LoRA A and B value this rank holds, by tensor name.
func adapterValues(_ trainer: Trainer) -> [String: [Float]] {
    var values: [String: [Float]] = [:]
    for slice in trainer.parameters.neededSlices(.parameters) where slice.name.contains(".lora_") {
        values[slice.name] = Array(UnsafeBufferPointer(start: slice.pointer, count: slice.elements.count))
    }
    return values
}

/// LoRA+: the largest step of any B element (its weight decay taken out) is ratio × lr, of any A
/// element 1 × lr, on every rank.
func checkLoRAPlus(_ trainer: Trainer, before: [String: [Float]], config: PretrainConfig, learningRate: Double,
                   world: Communicator, log: Log) throws {
    let ratio = config.lora?.loraPlusRatio ?? 1, decay = config.optimizer.weightDecay
    var largest = ["lora_A": 0.0, "lora_B": 0.0]
    for (name, after) in adapterValues(trainer) {
        guard let old = before[name], let kind = largest.keys.first(where: { name.contains($0) }) else { continue }
        let rate = learningRate * (kind == "lora_B" ? ratio : 1)
        for (then, now) in zip(old, after) {
            let step = abs(Double(now) - Double(then) * (1 - rate * decay))
            largest[kind] = max(largest[kind] ?? 0, step / learningRate)
        }
    }
    let a = try world.allreduce(largest["lora_A"] ?? 0, .max), b = try world.allreduce(largest["lora_B"] ?? 0, .max)
    guard abs(a - 1) < 1e-3, abs(b - ratio) < 1e-3 * ratio else {
        throw JobError("LoRA+ ratio \(ratio): the largest step of A is \(a) × lr, of B \(b) × lr")
    }
    log.info("loraplus A \(a) B \(b)")
}

/// Sets every LoRA B this rank holds to a small value that depends on the global element only
/// (B starts at zero, which would leave A without a gradient at the first step).
func startAdaptersNonZero(_ trainer: Trainer) { startAdaptersNonZero(trainer.parallelModel) }

func startAdaptersNonZero(_ model: ParallelModel) {
    for slice in model.parameters.neededSlices(.parameters) where slice.name.hasSuffix("lora_B.weight") {
        for run in model.tensorLayout.globalRuns(slice.parameterIndex, elements: slice.elements) {
            for (offset, element) in run.global.enumerated() {
                slice.pointer[run.localStart - slice.elements.lowerBound + offset] = Float((element * 7 + slice.name.utf8.count) % 13) * 0.01 - 0.06
            }
        }
    }
}

/// Micro-batches whose samples depend only on their global index: two documents packed in a
/// row (positions restart), ignored targets, and loss weights in {0, 0.5, 1, 2}.
struct SyntheticBatches: BatchSource {
    let config: PretrainConfig
    let dataParallelDegree: Int
    let rank: Int
    let weighted: Bool

    func microBatches(step: Int) -> [MicroBatch] {
        let train = config.train
        let perRank = train.globalBatchSize / dataParallelDegree
        return stride(from: 0, to: perRank, by: train.microBatchSize).map { first in
            var tokens: [Int32] = [], targets: [Int32] = [], positions: [Int32] = [], weights: [Float] = []
            for offset in 0..<train.microBatchSize {
                let sample = step * train.globalBatchSize + rank * perRank + first + offset
                var generator = SplitMix64(seed: 99, stream: UInt64(sample))
                let split = 3 + Int(generator.next() % UInt64(train.seqLen - 6))
                // A learnable sequence: each id follows from the one before.
                var ids = [Int32(generator.next() % UInt64(config.model.vocabSize))]
                for _ in 0..<train.seqLen { ids.append((ids[ids.count - 1] * 5 + 3) % Int32(config.model.vocabSize)) }
                for position in 0..<train.seqLen {
                    tokens.append(ids[position])
                    // A token predicts the next within its document; the last of the first does not.
                    targets.append(position == split - 1 || generator.next() % 7 == 0 ? -100 : ids[position + 1])
                    positions.append(Int32(position < split ? position : position - split))
                    let weight: Float = [0, 0.5, 1, 2][Int(generator.next() % 4)]
                    weights.append(weighted ? weight : 1)
                }
            }
            return MicroBatch(tokens: tokens, targets: targets, positions: positions, lossWeights: weights,
                              sequenceLength: train.seqLen, firstRow: rank * perRank + first)
        }
    }
}

/// A scalar-head objective for the checks: each sequence's score at its last token regresses to
/// a target made from the sequence's first token, ½(score − target)² averaged over sequences.
struct ScoreRegressionObjective: TrainingObjective {
    var name: String { "score_regression" }
    var metricNames: [String] { ["score"] }

    func normalization(of batch: MicroBatch) -> Double { Double(batch.sequenceSpans.count) }

    func evaluate(_ input: ObjectiveInput, gradient: ObjectiveGradient) -> ObjectiveOutput {
        var lossSum = 0.0, scoreSum = 0.0
        let spans = input.batch.sequenceSpans
        for span in spans {
            let target = Double(input.batch.tokens[span.lowerBound] % 7) / 3 - 1
            let score = Double(input.score(atLastTokenOf: span))
            lossSum += 0.5 * (score - target) * (score - target)
            scoreSum += score
            gradient.scores[(span.upperBound - 1) * input.labelCount] = Float(input.scale * (score - target))
        }
        return ObjectiveOutput(lossSum: lossSum, metrics: ["score": MetricSum(sum: scoreSum, count: Double(spans.count))])
    }
}

/// The small model of the forward and reference checks (2 layers, GQA, 97 ids) with `pp`, `tp`
/// and ZeRO stage `zero`, and its device mesh (the data-parallel degree the rest of the world).
func smallModelMesh(_ world: Communicator, pp: Int, tp: Int, zero: Int, sequenceLength: Int, globalBatchSize: Int,
                    source: String) throws -> (PretrainConfig, DeviceMesh) {
    let yaml = """
        model: {vocab_size: 97, hidden_size: 32, intermediate_size: 72, num_hidden_layers: 2, num_attention_heads: 4,
                num_key_value_heads: 2, max_position_embeddings: 64}
        train: {steps: 1, seed: 7, seq_len: \(sequenceLength), global_batch_size: \(globalBatchSize), micro_batch_size: 2, document_masking: true}
        optimizer: {lr: 0.01}
        data: {train: synthetic}
        parallel: {pp: \(pp), tp: \(tp), zero_stage: \(zero)}
        """
    let config = try world.collectively { try ConfigLoader.decode(PretrainConfig.self, yaml: yaml, source: source) }
    let mesh = try world.collectively {
        try DeviceMesh(world: world, dims: try ParallelDims(worldSize: world.size, pipelineDegree: pp, dataDegree: nil, contextDegree: 1,
                                                           tensorDegree: tp, expertDegree: 1))
    }
    return (config, mesh)
}

/// `mpi-checks forward PP TP ZERO`: a forward-only model scores every sequence of one global
/// batch, which must equal, bit for bit, what the trainer's model computes on the same mesh
/// from the same initialization; rank 0 prints `sequence B S SUM COUNT` for tests to compare
/// across layouts.
func forwardChecks(_ world: Communicator, _ log: Log, arguments: [String]) throws {
    guard arguments.count >= 4, let pp = Int(arguments[1]), let tp = Int(arguments[2]), let zero = Int(arguments[3]) else {
        throw JobError("usage: mpi-checks forward PP TP ZERO")
    }
    let (config, mesh) = try smallModelMesh(world, pp: pp, tp: tp, zero: zero, sequenceLength: 16, globalBatchSize: 8, source: "forward check")
    // Every rank scores the whole global batch (4 micro-batches).
    let batches = SyntheticBatches(config: config, dataParallelDegree: 1, rank: 0, weighted: false).microBatches(step: 0)
    let forward = try world.collectively {
        try ForwardModel(config: config.model, microBatchSize: 2, sequenceLength: 16, parallel: config.parallel, mesh: mesh,
                         threads: .single, seed: 7)
    }
    let memory = forward.parallelModel.parameters.residentBytes
    guard memory.gradients == 0, memory.optimizerState == 0, memory.parameters > 0 else {
        throw JobError("rank \(world.rank): a forward-only model holds \(memory)")
    }
    let scored = try forward.sequenceLogProbabilities(batches)
    let trainer = try world.collectively { try Trainer(config: config, mesh: mesh, threads: .single, log: log) }
    let reference = try trainer.parallelModel.sequenceLogProbabilities(batches)
    guard scored == reference else {
        throw JobError("rank \(world.rank): the forward-only model's log-probabilities differ from the trainer's model's")
    }
    for (b, sequences) in scored.enumerated() {
        for (s, sequence) in sequences.enumerated() { log.info("sequence \(b) \(s) \(sequence.sum) \(sequence.count)") }
    }
}
