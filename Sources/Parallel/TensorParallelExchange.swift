import Model
import Runtime

/// The tensor-parallel regions of one rank's model over MPI: the `TensorParallelRegions` hooks
/// as blocking collectives on the `tensor` communicator (the tp ranks of one model replica).
///
/// Forward: an all-reduce (sum) after each row-parallel projection (`o_proj`, `down_proj`) and
/// after the vocabulary-parallel embedding; for the loss, an all-reduce (max) of [B·T] and one
/// (sum) of [2, B·T]. Backward: an all-reduce (sum) of the input gradient of each group of
/// column-parallel projections (`q/k/v_proj`, `gate/up_proj`, `lm_head`) before its norm.
/// These sit on the critical path: the next kernel needs their result.
public final class TensorParallelExchange: TensorParallelRegions {
    public let communicator: Communicator
    public let vocabularyStart: Int?
    /// Seconds spent in these collectives since the last reset (`meshlm bench train`'s
    /// communication share).
    public var seconds = 0.0

    public init(communicator: Communicator, layout: TensorParallelLayout) {
        self.communicator = communicator
        vocabularyStart = layout.vocabularyRange.lowerBound
    }

    public func sumPartials(_ values: UnsafeMutablePointer<Float>, count: Int) {
        let start = monotonicSeconds()
        orAbort { try communicator.allreduce(UnsafeMutableBufferPointer(start: values, count: count), .sum) }
        seconds += monotonicSeconds() - start
    }

    public func maximum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        let start = monotonicSeconds()
        orAbort { try communicator.allreduce(UnsafeMutableBufferPointer(start: values, count: count), .max) }
        seconds += monotonicSeconds() - start
    }
}

/// A `ParameterAccess` for tensor parallelism over the data-parallel one: it passes every hook
/// through, and where tp exceeds num_key_value_heads it first sums the gradients of the
/// replicated `k_proj` / `v_proj` over the ranks sharing them (each replica saw only its own
/// query heads' contribution), once per reduction of the inner layer (every micro-batch at
/// ZeRO-2/3, the last one otherwise), so the replicas take identical steps.
public final class TensorParallelParameters: ParameterAccess {
    public let inner: DataParallelParameters
    public let tensorLayout: TensorParallelLayout
    /// The ranks sharing this rank's KV heads; nil when nothing is replicated.
    private let replicaCommunicator: Communicator?
    private var heldGradients: [ModelBlock: UnsafeMutablePointer<Float>] = [:]

    public var layout: ParameterLayout { inner.layout }

    public init(inner: DataParallelParameters, tensorLayout: TensorParallelLayout, tensorCommunicator: Communicator) throws {
        self.inner = inner
        self.tensorLayout = tensorLayout
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
        if let replicaCommunicator, let gradients = heldGradients[block],
           inner.stage.rawValue >= ZeroStage.gradients.rawValue || inner.isLastMicroBatch {
            let blockStart = layout.range(of: block).lowerBound
            for (index, entry) in layout.entries.enumerated() where entry.block == block && tensorLayout.isReplicatedKeyValue(index) {
                let region = UnsafeMutableBufferPointer(start: gradients + (entry.offset - blockStart), count: entry.count)
                orAbort { try replicaCommunicator.allreduce(region, .sum) }
            }
        }
        heldGradients[block] = nil
        inner.releaseGradients(block)
    }
}
