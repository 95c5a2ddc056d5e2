import Model
import Runtime

/// The tensor-parallel regions of one rank's model over MPI: the `TensorParallelRegions` hooks
/// as blocking collectives on the `tensor` communicator (the tp ranks of one model replica).
///
/// Forward: an all-reduce (sum) after each row-parallel projection (`o_proj`, `down_proj`) and
/// after the vocabulary-parallel embedding; for the loss, an all-reduce (max) of [B·T] and one
/// (sum) of [2, B·T]. Backward: an all-reduce (sum) of the input gradient of each group of
/// column-parallel projections (`q/k/v_proj`, `gate/up_proj`, `lm_head`) before its norm.
/// These sit on the critical path: the next kernel needs their result. With sequence parallelism
/// the all-reduces around the projections become reduce-scatters (forward) and all-gathers
/// (the norm outputs forward, the stream's gradient backward) of the token rows.
public final class TensorParallelExchange: TensorParallelRegions {
    public let communicator: Communicator
    public let vocabularyStart: Int?
    public let splitsSequence: Bool
    /// Seconds spent in these collectives since the last reset (`meshlm bench train`'s
    /// communication share).
    public var seconds = 0.0

    /// Where this rank's input columns of each projection start (`adapterInputStart`).
    private let inputStarts: [Projection: Int]

    public init(communicator: Communicator, layout: TensorParallelLayout, sequenceParallel: Bool) {
        self.communicator = communicator
        vocabularyStart = layout.vocabularyRange.lowerBound
        splitsSequence = sequenceParallel
        inputStarts = Dictionary(uniqueKeysWithValues: Projection.allCases.map { ($0, layout.inputStart(of: $0)) })
    }

    public func adapterInputStart(_ projection: Projection) -> Int { inputStarts[projection] ?? 0 }

    public var isFirstRank: Bool { communicator.rank == 0 }

    public func localTokenCount(of tokenCount: Int) -> Int {
        guard splitsSequence else { return tokenCount }
        precondition(tokenCount % communicator.size == 0, "\(tokenCount) token rows do not split over tp \(communicator.size)")
        return tokenCount / communicator.size
    }

    public func allGather(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, localCount: Int) {
        timed {
            try communicator.allgather(UnsafeBufferPointer(start: local, count: localCount),
                                       into: UnsafeMutableBufferPointer(start: full, count: localCount * communicator.size))
        }
    }

    public func reduceScatter(_ full: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, localCount: Int) {
        timed {
            try communicator.reduceScatter(UnsafeBufferPointer(start: full, count: localCount * communicator.size),
                                           into: UnsafeMutableBufferPointer(start: local, count: localCount), .sum)
        }
    }

    public func sumPartials(_ values: UnsafeMutablePointer<Float>, count: Int) {
        timed { try communicator.allreduce(UnsafeMutableBufferPointer(start: values, count: count), .sum) }
    }

    public func maximum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        timed { try communicator.allreduce(UnsafeMutableBufferPointer(start: values, count: count), .max) }
    }

    /// Runs one collective, adding its time to `seconds`; a failure ends the job (`orAbort`).
    private func timed(_ collective: () throws -> Void) {
        let start = monotonicSeconds()
        orAbort(collective)
        seconds += monotonicSeconds() - start
    }
}

/// A `ParameterAccess` for tensor parallelism over the data-parallel one: it passes every hook
/// through, and before the inner layer reduces a block's gradients it sums over the tensor
/// group what each rank computed only in part (`TensorParallelLayout.partialGradientGroup`) —
/// the replicated `k_proj` / `v_proj` where tp exceeds num_key_value_heads (each replica saw
/// only its own query heads), over the ranks sharing them; qwen3's q_norm / k_norm (each rank saw
/// its own heads) and, with sequence parallelism, the other norm weights (each rank saw only its
/// token rows), over the whole group — once per reduction of the inner layer (every micro-batch at
/// ZeRO-2/3, the last one otherwise), so replicas take identical steps.
public final class TensorParallelParameters: ParameterAccess {
    public let inner: DataParallelParameters
    public let tensorLayout: TensorParallelLayout
    /// The ranks sharing this rank's KV heads; nil when nothing is replicated.
    private let replicaCommunicator: Communicator?
    private let tensorCommunicator: Communicator
    private let sequenceParallel: Bool
    private var heldGradients: [ModelBlock: UnsafeMutablePointer<Float>] = [:]

    public var layout: ParameterLayout { inner.layout }

    /// Whether a layout needs this wrapper at all.
    public static func isNeeded(_ tensorLayout: TensorParallelLayout, sequenceParallel: Bool) -> Bool {
        tensorLayout.localLayout.entries.indices.contains {
            tensorLayout.partialGradientGroup($0, sequenceParallel: sequenceParallel) != nil
        }
    }

    public init(inner: DataParallelParameters, tensorLayout: TensorParallelLayout, tensorCommunicator: Communicator,
                sequenceParallel: Bool) throws {
        self.inner = inner
        self.tensorLayout = tensorLayout
        self.tensorCommunicator = tensorCommunicator
        self.sequenceParallel = sequenceParallel
        let replicas = tensorLayout.keyValueReplicas
        replicaCommunicator = replicas > 1
            ? try tensorCommunicator.split(color: tensorCommunicator.rank / replicas, key: tensorCommunicator.rank)
            : nil
    }

    public func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float> { inner.acquireParameters(block) }
    public func releaseParameters(_ block: ModelBlock) { inner.releaseParameters(block) }

    public func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        let pointer = inner.acquireGradients(block)
        heldGradients[block] = pointer
        return pointer
    }

    public func releaseGradients(_ block: ModelBlock) {
        if let gradients = heldGradients[block], inner.stage.rawValue >= ZeroStage.gradients.rawValue || inner.isLastMicroBatch {
            let blockStart = layout.range(of: block).lowerBound
            for (index, entry) in layout.entries.enumerated() where entry.block == block && entry.trainable {
                let group: Communicator? = switch tensorLayout.partialGradientGroup(index, sequenceParallel: sequenceParallel) {
                case .keyValueReplicas: replicaCommunicator
                case .tensorGroup: tensorCommunicator
                case nil: nil
                }
                guard let group else { continue }
                let region = UnsafeMutableBufferPointer(start: gradients + (entry.offset - blockStart), count: entry.count)
                orAbort { try group.allreduce(region, .sum) }
            }
        }
        heldGradients[block] = nil
        inner.releaseGradients(block)
    }
}
