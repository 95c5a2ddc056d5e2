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

    /// The base to merge into: `weight` [rowCount, columnCount] itself, or dequant(NF4(weight)).
    public func base(_ weight: [Float], rowCount: Int, columnCount: Int) -> [Float] {
        precondition(weight.count == rowCount * columnCount, "a base of \(weight.count) values for \(rowCount)×\(columnCount)")
        guard self == .dequantized else { return weight }
        return weight.withUnsafeBufferPointer { values in
            guard let base = values.baseAddress else { return [] }
            return NF4Matrix(quantizing: base, rowCount: rowCount, columnCount: columnCount).dequantized()
        }
    }
}
