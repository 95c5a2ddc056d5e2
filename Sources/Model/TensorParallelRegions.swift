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
/// On one device (`SingleDeviceRegions`) every hook is the identity and the model computes
/// exactly what it computed before the seam existed.
public protocol TensorParallelRegions: AnyObject {
    /// The first id of this rank's vocabulary slice (embedding rows, `lm_head` rows, logits
    /// columns), or nil when this rank holds the whole vocabulary.
    var vocabularyStart: Int? { get }
    /// Replaces `values` by their sum over the tensor-parallel group.
    func sumPartials(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// Replaces `values` by their elementwise maximum over the tensor-parallel group.
    func maximum(_ values: UnsafeMutablePointer<Float>, count: Int)
}

/// The identity regions of a model that runs whole on one device.
public final class SingleDeviceRegions: TensorParallelRegions {
    public init() {}
    public var vocabularyStart: Int? { nil }
    public func sumPartials(_ values: UnsafeMutablePointer<Float>, count: Int) {}
    public func maximum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
}
