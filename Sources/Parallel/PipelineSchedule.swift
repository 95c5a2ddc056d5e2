/// One step of a pipeline stage's schedule: run micro-batch `microBatch` forward or backward
/// through the stage's model chunk `chunk` (0 without interleaving).
public enum PipelineAction: Sendable, Equatable, CustomStringConvertible {
    case forward(microBatch: Int, chunk: Int)
    case backward(microBatch: Int, chunk: Int)

    public var description: String {
        switch self {
        case .forward(let microBatch, let chunk): "F\(microBatch)" + (chunk > 0 ? ".\(chunk)" : "")
        case .backward(let microBatch, let chunk): "B\(microBatch)" + (chunk > 0 ? ".\(chunk)" : "")
        }
    }
}

/// Pipeline schedules: the order in which one stage runs its micro-batches' forwards and
/// backwards. Activations flow from virtual stage v to v + 1 and gradients back; with `c`
/// chunks per rank and `p` ranks, virtual stage `chunk · p + stage` is chunk `chunk` of rank
/// `stage` (Megatron's interleaving: rank 0 holds virtual stages 0, p, 2p…).
public enum PipelineSchedule {
    /// The schedule a stage runs: 1F1B with one chunk per stage, interleaved 1F1B with more.
    public static func actions(stage: Int, stageCount: Int, chunkCount: Int, microBatchCount: Int) -> [PipelineAction] {
        chunkCount == 1
            ? oneForwardOneBackward(stage: stage, stageCount: stageCount, microBatchCount: microBatchCount)
            : interleaved(stage: stage, stageCount: stageCount, chunkCount: chunkCount, microBatchCount: microBatchCount)
    }

    /// 1F1B (PipeDream-Flush, Megatron's default): `min(p − stage − 1, m)` warm-up forwards, then
    /// alternate one forward and one backward, then the remaining backwards. A stage holds at
    /// most `p − stage` micro-batches' activations, against `m` for fill-drain (GPipe).
    public static func oneForwardOneBackward(stage: Int, stageCount: Int, microBatchCount: Int) -> [PipelineAction] {
        let warmup = min(stageCount - stage - 1, microBatchCount)
        var actions: [PipelineAction] = (0..<warmup).map { .forward(microBatch: $0, chunk: 0) }
        for index in 0..<(microBatchCount - warmup) {
            actions.append(.forward(microBatch: warmup + index, chunk: 0))
            actions.append(.backward(microBatch: index, chunk: 0))
        }
        for index in (microBatchCount - warmup)..<microBatchCount { actions.append(.backward(microBatch: index, chunk: 0)) }
        return actions
    }

    /// Interleaved 1F1B (Megatron's virtual pipeline): each rank holds `chunkCount` chunks, and
    /// micro-batches go through them in groups of `stageCount`, which shrinks the bubble by the
    /// chunk count at the cost of `chunkCount`× the point-to-point messages.
    /// - Precondition: `microBatchCount` is a multiple of `stageCount` (validated by the caller).
    public static func interleaved(stage: Int, stageCount: Int, chunkCount: Int, microBatchCount: Int) -> [PipelineAction] {
        precondition(microBatchCount % stageCount == 0, "interleaving needs micro-batches in multiples of the stages")
        let (p, v) = (stageCount, chunkCount)
        let total = microBatchCount * v
        // Virtual micro-batch k: the k-th forward (or backward) this stage runs.
        func microBatch(_ k: Int) -> Int { (k / (p * v)) * p + k % p }
        func forwardChunk(_ k: Int) -> Int { (k % (p * v)) / p }
        func backwardChunk(_ k: Int) -> Int { v - 1 - forwardChunk(k) }
        let warmup = microBatchCount == p ? total : min((p - stage - 1) * 2 + (v - 1) * p, total)
        var actions: [PipelineAction] = (0..<warmup).map { .forward(microBatch: microBatch($0), chunk: forwardChunk($0)) }
        for index in 0..<(total - warmup) {
            let k = warmup + index
            actions.append(.forward(microBatch: microBatch(k), chunk: forwardChunk(k)))
            actions.append(.backward(microBatch: microBatch(index), chunk: backwardChunk(index)))
        }
        for index in (total - warmup)..<total {
            actions.append(.backward(microBatch: microBatch(index), chunk: backwardChunk(index)))
        }
        return actions
    }

    /// The fraction of a step a stage idles under a schedule with uniform stage times (forward
    /// F, backward 2F): (p − 1) / (v·m + p − 1) — the figure measured bubbles are set against.
    public static func theoreticalBubble(stageCount: Int, chunkCount: Int, microBatchCount: Int) -> Double {
        Double(stageCount - 1) / Double(chunkCount * microBatchCount + stageCount - 1)
    }

    /// The most micro-batches whose activations a chunk holds at once under `actions`.
    public static func peakInFlight(_ actions: [PipelineAction], chunk: Int) -> Int {
        var live = 0, peak = 0
        for action in actions {
            switch action {
            case .forward(_, let c) where c == chunk: live += 1; peak = max(peak, live)
            case .backward(_, let c) where c == chunk: live -= 1
            default: break
            }
        }
        return peak
    }

    /// Runs every stage's actions against each other (sends never block, a forward waits for the
    /// previous virtual stage's forward of its micro-batch, a backward for the next one's
    /// backward) and returns nil if all complete, or a description of the deadlock or ordering
    /// error. Tests use it to check schedules before any rank runs them.
    public static func simulate(_ schedules: [[PipelineAction]], chunkCount: Int, microBatchCount: Int) -> String? {
        let p = schedules.count
        let last = p * chunkCount - 1
        var forwardDone = Set<[Int]>(), backwardDone = Set<[Int]>()  // [virtual stage, micro-batch]
        var positions = [Int](repeating: 0, count: p)
        var progressed = true
        while progressed {
            progressed = false
            for stage in 0..<p where positions[stage] < schedules[stage].count {
                let action = schedules[stage][positions[stage]]
                switch action {
                case .forward(let microBatch, let chunk):
                    let virtual = chunk * p + stage
                    guard virtual == 0 || forwardDone.contains([virtual - 1, microBatch]) else { continue }
                    forwardDone.insert([virtual, microBatch])
                case .backward(let microBatch, let chunk):
                    let virtual = chunk * p + stage
                    guard forwardDone.contains([virtual, microBatch]) else {
                        return "stage \(stage): \(action) before its forward"
                    }
                    guard virtual == last || backwardDone.contains([virtual + 1, microBatch]) else { continue }
                    backwardDone.insert([virtual, microBatch])
                }
                positions[stage] += 1
                progressed = true
            }
        }
        for stage in 0..<p where positions[stage] < schedules[stage].count {
            return "deadlock: stage \(stage) waits at \(schedules[stage][positions[stage]]) (step \(positions[stage]))"
        }
        let expected = (last + 1) * microBatchCount
        guard forwardDone.count == expected, backwardDone.count == expected else {
            return "\(forwardDone.count) forwards and \(backwardDone.count) backwards of \(expected) each"
        }
        return nil
    }
}
