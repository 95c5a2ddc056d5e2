/// Where the model's activations cross tensor-parallel ranks: the seam between the single-device
/// model and tensor parallelism (STYLE habit 1), the activation counterpart of `ParameterAccess`.
///
/// With tensor parallelism the model is given local sizes (its share of heads, of the MLP width
/// and of the vocabulary) and calls these hooks at the edges of the parallel regions, in
/// Megatron's conjugate pairs:
///
/// - *reduce from region* — forward: `sumPartials` of a row-parallel projection's output
///   (`o_proj`, `down_proj`) and of the vocabulary-parallel embedding; backward: identity.
/// - *copy to region* — forward: identity (the input of the column-parallel projections
///   `q/k/v_proj`, `gate/up_proj` and `lm_head` is replicated); backward: `sumPartials` of the
///   gradient of that input, before the norm's backward.
/// - the vocabulary-parallel loss: `maximum` and `sumPartials` of per-row statistics
///   (`CrossEntropy.partialForward` / `finish`); its backward needs no communication.
///
/// With sequence parallelism (`splitsSequence`) the residual stream, the norms and the residual
/// adds hold only this rank's `localTokenCount` rows (a contiguous share of the B·T rows), and
/// the pairs become Megatron's sequence-parallel ones:
///
/// - entering a parallel region — forward: `allGather` of the norm's output rows; backward:
///   `reduceScatter` of its gradient (summed over ranks, each keeping its rows);
/// - leaving one (`o_proj`, `down_proj`, the embedding) — forward: `reduceScatter` of the
///   partial products; backward: `allGather` of the stream's gradient.
///
/// On one device (`SingleDeviceRegions`) every hook is the identity and the model computes
/// exactly what it computed before the seam existed.
public protocol TensorParallelRegions: AnyObject {
    /// The first id of this rank's vocabulary slice (embedding rows, `lm_head` rows, logits
    /// columns), or nil when this rank holds the whole vocabulary.
    var vocabularyStart: Int? { get }
    /// Whether this is the group's first rank (the one that adds a replicated head's gradient
    /// to a sum over the group).
    var isFirstRank: Bool { get }
    /// Replaces `values` by their sum over the tensor-parallel group.
    func sumPartials(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// Replaces `values` by their elementwise maximum over the tensor-parallel group.
    func maximum(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// Whether activations outside the parallel regions are split along the token rows.
    var splitsSequence: Bool { get }
    /// Rows of the residual stream this rank holds, of `tokenCount` in a micro-batch.
    func localTokenCount(of tokenCount: Int) -> Int
    /// `full` ← the group's `local` blocks in rank order (`local.count × degree` floats).
    func allGather(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, localCount: Int)
    /// `local` ← this rank's block of the sum over the group of `full` (`localCount × degree` floats).
    func reduceScatter(_ full: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, localCount: Int)
    /// The global column of `projection`'s first local input column: where this rank's slice of
    /// a row-parallel projection's input starts, 0 for a column-parallel one (LoRA dropout keys
    /// its masks by global column).
    func adapterInputStart(_ projection: Projection) -> Int
}

extension TensorParallelRegions {
    public var isFirstRank: Bool { true }
    public var splitsSequence: Bool { false }
    public func localTokenCount(of tokenCount: Int) -> Int { tokenCount }
    public func adapterInputStart(_ projection: Projection) -> Int { 0 }
    public func allGather(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, localCount: Int) {
        preconditionFailure("allGather needs sequence parallelism")
    }
    public func reduceScatter(_ full: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, localCount: Int) {
        preconditionFailure("reduceScatter needs sequence parallelism")
    }
}

/// The identity regions of a model that runs whole on one device.
public final class SingleDeviceRegions: TensorParallelRegions {
    public init() {}
    public var vocabularyStart: Int? { nil }
    public func sumPartials(_ values: UnsafeMutablePointer<Float>, count: Int) {}
    public func maximum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
}
