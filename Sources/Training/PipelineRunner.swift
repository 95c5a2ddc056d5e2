import Foundation
import Model
import Parallel
import Runtime
import Tensors

/// One rank's pipeline stage: runs a step's micro-batches through its model chunks in the order
/// a `PipelineSchedule` gives, receiving activations and gradients from the neighbouring stages
/// and sending its own.
///
/// Communication, on the `pipeline` communicator (the pp ranks of one model replica):
/// - forward: the stage input [M, C] (M = B·T rows of the residual stream, B·T/tp with sequence
///   parallelism) is received from the previous virtual stage (`MPI_Recv`, blocking: the
///   forward needs it); the output is copied to a send buffer and sent to the next
///   (`MPI_Isend`, completed by a progress thread while this stage computes on);
/// - backward: the gradient of the output comes from the next virtual stage, the gradient of the
///   input goes to the previous one, the same way.
/// Time blocked in receives is the stage's measured bubble (`waitSeconds`).
///
/// Each chunk keeps as many model instances (activation arenas) as the schedule has its
/// micro-batches in flight at once: `p − stage` for 1F1B, against `m` for fill-drain.
final class PipelineRunner {
    let pipeline: Communicator
    let stage: Int
    let stageCount: Int
    let chunkCount: Int
    let microBatchCount: Int
    let actions: [PipelineAction]
    /// `models[chunk][slot]`: chunk c is virtual stage `c · stageCount + stage`.
    let models: [[LlamaModel]]
    /// Seconds blocked in receives during the last `run`.
    private(set) var waitSeconds = 0.0
    private var pendingSends: [(request: Request, buffer: Tensor)] = []
    private var freeBuffers: [Tensor] = []
    private let progressThread = ProgressThread()

    /// - Parameter forwardOnly: one model instance per chunk (`evaluate` runs micro-batches one
    ///   after another; `run` is not used).
    init(pipeline: Communicator, parts: [ModelPart], microBatchCount: Int, forwardOnly: Bool = false,
         makeModel: (ModelPart) -> LlamaModel) {
        self.pipeline = pipeline
        stage = pipeline.rank
        stageCount = pipeline.size
        chunkCount = parts.count
        self.microBatchCount = microBatchCount
        let actions = PipelineSchedule.actions(stage: pipeline.rank, stageCount: pipeline.size, chunkCount: parts.count,
                                               microBatchCount: microBatchCount)
        self.actions = actions
        models = parts.enumerated().map { chunk, part in
            let slots = forwardOnly ? 1 : max(PipelineSchedule.peakInFlight(actions, chunk: chunk), 1)
            return (0..<slots).map { _ in makeModel(part) }
        }
    }

    deinit { progressThread.stop() }

    private var virtualStageCount: Int { stageCount * chunkCount }
    private func virtualStage(_ chunk: Int) -> Int { chunk * stageCount + stage }
    private func rank(ofVirtual virtual: Int) -> Int { virtual % stageCount }

    /// The tag of a message to virtual stage `virtual` about `microBatch`: activations even,
    /// gradients odd, unique within a step.
    private func tag(microBatch: Int, virtual: Int, gradient: Bool) -> Int {
        2 * (microBatch * virtualStageCount + virtual) + (gradient ? 1 : 0)
    }

    /// What the last virtual stage does between a micro-batch's forward and its backward: run
    /// the objective on the model's log-probabilities, leaving the gradient backward starts from.
    typealias HeadAction = (_ model: LlamaModel, _ batch: MicroBatch, _ crossEntropy: CrossEntropy.Total) -> Void

    /// Forward and backward of every micro-batch under the schedule; `head` runs on the last
    /// virtual stage after each micro-batch's forward.
    func run(batches: [MicroBatch], parameters: DataParallelParameters, access: any ParameterAccess,
             dropout: (MicroBatch) -> AdapterDropoutDraw? = { _ in nil }, head: HeadAction) throws {
        precondition(batches.count == microBatchCount, "\(batches.count) micro-batches for a schedule of \(microBatchCount)")
        waitSeconds = 0
        var slotOf: [[Int]: Int] = [:]  // [chunk, micro-batch] → slot
        var freeSlots = models.map { Array((0..<$0.count).reversed()) }
        var lastBackward = [Int](repeating: -1, count: chunkCount)
        for (index, action) in actions.enumerated() {
            if case .backward(_, let chunk) = action { lastBackward[chunk] = index }
        }
        for (index, action) in actions.enumerated() {
            switch action {
            case .forward(let microBatch, let chunk):
                guard let slot = freeSlots[chunk].popLast() else { preconditionFailure("no free activation slot for chunk \(chunk)") }
                slotOf[[chunk, microBatch]] = slot
                try forward(models[chunk][slot], chunk: chunk, microBatch: microBatch, batch: batches[microBatch],
                            access: access, dropout: dropout(batches[microBatch]), head: head)
            case .backward(let microBatch, let chunk):
                guard let slot = slotOf.removeValue(forKey: [chunk, microBatch]) else { preconditionFailure("backward before forward") }
                let model = models[chunk][slot]
                let virtual = virtualStage(chunk)
                if virtual < virtualStageCount - 1 {
                    try receive(into: model.stageOutputGradient, count: model.stageElementCount, from: rank(ofVirtual: virtual + 1),
                                tag: tag(microBatch: microBatch, virtual: virtual, gradient: true))
                }
                parameters.isLastMicroBatch = index == lastBackward[chunk]
                model.backward(parameters: access)
                if virtual > 0 {
                    try send(model.stageInputGradient, count: model.stageElementCount, to: rank(ofVirtual: virtual - 1),
                             tag: tag(microBatch: microBatch, virtual: virtual - 1, gradient: true))
                }
                freeSlots[chunk].append(slot)
            }
            try collectSends(waiting: false)
        }
        try collectSends(waiting: true)
    }

    /// Forward only, micro-batch by micro-batch through every chunk (evaluation); `head` runs
    /// on the last virtual stage after each forward.
    func evaluate(batches: [MicroBatch], access: any ParameterAccess, head: HeadAction) throws {
        for (index, batch) in batches.enumerated() {
            for chunk in 0..<chunkCount {
                try forward(models[chunk][0], chunk: chunk, microBatch: index, batch: batch, access: access, dropout: nil, head: head)
            }
        }
        try collectSends(waiting: true)
    }

    /// One micro-batch forward through chunk `chunk` on `model`: its input from the previous
    /// virtual stage (unless it holds the embedding), its output to the next (unless it holds
    /// the head, where `head` runs).
    private func forward(_ model: LlamaModel, chunk: Int, microBatch: Int, batch: MicroBatch,
                         access: any ParameterAccess, dropout: AdapterDropoutDraw?, head: HeadAction) throws {
        // The slot's backward for this micro-batch redraws the same LoRA dropout masks.
        model.adapterDropout = dropout
        let virtual = virtualStage(chunk)
        if virtual > 0 {
            try receive(into: model.stageInput, count: model.stageElementCount, from: rank(ofVirtual: virtual - 1),
                        tag: tag(microBatch: microBatch, virtual: virtual, gradient: false))
        }
        let total = batch.withPointers { tokens, targets, positions in
            model.forward(tokens: tokens, targets: targets, positions: positions, parameters: access)
        }
        if virtual < virtualStageCount - 1 {
            try send(model.stageOutput, count: model.stageElementCount, to: rank(ofVirtual: virtual + 1),
                     tag: tag(microBatch: microBatch, virtual: virtual + 1, gradient: false))
        } else {
            head(model, batch, total)
        }
    }

    private func receive(into destination: UnsafeMutablePointer<Float>, count: Int, from source: Int, tag: Int) throws {
        let start = monotonicSeconds()
        try pipeline.receive(into: UnsafeMutableBufferPointer(start: destination, count: count), from: source, tag: tag)
        waitSeconds += monotonicSeconds() - start
    }

    /// Sends a copy, so the model's arena may be reused before the message is delivered.
    private func send(_ source: UnsafePointer<Float>, count: Int, to destination: Int, tag: Int) throws {
        let buffer = freeBuffers.popLast().flatMap { $0.count == count ? $0 : nil } ?? Tensor(shape: [count])
        buffer.pointer.update(from: source, count: count)
        let request = try pipeline.sendNonBlocking(UnsafeBufferPointer(start: buffer.pointer, count: count), to: destination,
                                                   tag: tag, retaining: buffer)
        progressThread.watch(request)
        pendingSends.append((request, buffer))
    }

    private func collectSends(waiting: Bool) throws {
        var index = 0
        while index < pendingSends.count {
            let done = waiting ? true : try pendingSends[index].request.test()
            if done {
                if waiting { try pendingSends[index].request.wait() }
                freeBuffers.append(pendingSends.remove(at: index).buffer)
            } else {
                index += 1
            }
        }
    }
}
