import Tensors

/// The base a QLoRA run's adapters are merged into, named in the output of whatever merges them
/// (the seam for `meshlm ckpt merge-lora --base dequantized|original`; issue 14, item 7).
///
/// The adapters were trained against dequant(NF4(W)): merging into it reproduces the trained
/// model's outputs (to sgemm rounding); merging into the original f32 W keeps the base's full
/// precision but shifts every output by the quantization error the adapters learned around.
/// A checkpoint of a QLoRA run holds no layer projection: W comes from its `base_checkpoint`.
/// dequant(NF4(W)) is requantized from that W exactly as training quantized it — the whole
/// tensor, as one rank or data parallelism holds it (a tensor-parallel run quantized each
/// rank's slice in its own blocks, so its dequantized base differs within the NF4 bound).
public enum QLoRAMergeBase: String, CaseIterable, Sendable, CustomStringConvertible {
    /// dequant(NF4(W)): the weights the adapters were trained against.
    case dequantized
    /// W: the original f32 weights of the base checkpoint.
    case original

    public var description: String {
        switch self {
        case .dequantized: "merged into dequant(NF4(W)), the base the adapters were trained against"
        case .original: "merged into the original f32 W (not the NF4 base the adapters were trained against)"
        }
    }

    /// The merged projection: base + scaling · B·A, with base = W or dequant(NF4(W)).
    ///
    ///     weight [rowCount, columnCount]   a [rank, columnCount]   b [rowCount, rank]
    public func merge(weight: [Float], rowCount: Int, columnCount: Int, a: [Float], b: [Float], rank: Int, scaling: Float) -> [Float] {
        precondition(weight.count == rowCount * columnCount && a.count == rank * columnCount && b.count == rowCount * rank,
                     "merge: weight \(weight.count), A \(a.count), B \(b.count) for \(rowCount)×\(columnCount), rank \(rank)")
        var merged = weight
        if self == .dequantized {
            merged = weight.withUnsafeBufferPointer { values in
                guard let base = values.baseAddress else { return [] }
                return NF4Matrix(quantizing: base, rowCount: rowCount, columnCount: columnCount).dequantized()
            }
        }
        merged.withUnsafeMutableBufferPointer { output in
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    guard let output = output.baseAddress, let a = a.baseAddress, let b = b.baseAddress else { return }
                    BLAS.multiply(output: output, a: b, b: a, rowCount: rowCount, columnCount: columnCount, innerCount: rank,
                                  alpha: scaling, beta: 1)
                }
            }
        }
        return merged
    }
}
