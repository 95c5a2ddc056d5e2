import Tensors

/// QLoRA's frozen base (`lora.quantize_base`): every layer projection of this rank's part (its
/// tensor-parallel slice), quantized once after the base is loaded. The model's projections
/// run through `NF4Matmul` on these, and the f32 copies in the parameter arena are released.
///
/// Built on each rank from its own arena, so every data-parallel replica holds the same bits,
/// and a resumed run, which loads the same base, quantizes it to the same bits again.
public final class QuantizedBase: @unchecked Sendable {
    public let format: BaseQuantization
    /// By global layer index, then projection.
    private let weights: [Int: [Projection: NF4Matrix]]

    /// Quantizes the weights of `layout`'s layer projections, each read at
    /// `parameters(name)` (nil: this rank does not hold the tensor whole, e.g. under ZeRO-3).
    public init(format: BaseQuantization, layout: ParameterLayout, threads: KernelThreads,
                parameters: (ParameterLayout.Entry) -> UnsafePointer<Float>?) {
        self.format = format
        var weights: [Int: [Projection: NF4Matrix]] = [:]
        for entry in layout.entries {
            guard case .layer(let layer) = entry.block, let projection = Self.projection(of: entry),
                  let values = parameters(entry) else { continue }
            weights[layer, default: [:]][projection] = NF4Matrix(quantizing: values, rowCount: entry.shape[0],
                                                                 columnCount: entry.rowWidth, threads: threads)
        }
        self.weights = weights
    }

    /// The projection whose weight `entry` is (nil for norms, biases and other tensors).
    public static func projection(of entry: ParameterLayout.Entry) -> Projection? {
        guard case .layer = entry.block, entry.shape.count == 2 else { return nil }
        return Projection.allCases.first { $0.role == entry.role }
    }

    /// The quantized weight of `projection` in global layer `layer`.
    public func weight(_ projection: Projection, layer: Int) -> NF4Matrix? {
        weights[layer]?[projection]
    }

    /// How many matrices, and the bytes they hold.
    public var matrixCount: Int { weights.values.reduce(0) { $0 + $1.count } }
    public var byteCount: Int { weights.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.byteCount } } }
    /// The elements they quantize.
    public var elementCount: Int { weights.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } } }
}
