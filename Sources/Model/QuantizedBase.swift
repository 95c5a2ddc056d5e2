import Tensors

/// QLoRA's frozen base (`lora.quantize_base`): every layer projection of this rank's part (its
/// tensor-parallel slice), and with `quantize_embeddings` the frozen embedding table and
/// lm_head, quantized once after the base is loaded. The model's projections run through
/// `NF4Matmul` on these (the embedding lookup dequantizes its rows), and the f32 copies in the
/// parameter arena are released.
///
/// Built on each rank from its own arena, so every data-parallel replica holds the same bits,
/// and a resumed run, which loads the same base, quantizes it to the same bits again.
public final class QuantizedBase: @unchecked Sendable {
    public let format: BaseQuantization
    /// By global layer index, then projection.
    private let weights: [Int: [Projection: NF4Matrix]]
    /// `model.embed_tokens.weight` (also a tied head's projection) and `lm_head.weight`, when
    /// quantized.
    public let embedding, head: NF4Matrix?
    /// The names of every tensor held quantized.
    public let names: Set<String>

    /// Quantizes the tensors of `layout` that `quantizes(_:embeddings:)` picks, each read at
    /// `parameters(entry)` (nil: this rank does not hold the tensor whole, e.g. under ZeRO-3).
    public init(format: BaseQuantization, layout: ParameterLayout, embeddings: Bool = false, threads: KernelThreads,
                parameters: (ParameterLayout.Entry) -> UnsafePointer<Float>?) {
        self.format = format
        var weights: [Int: [Projection: NF4Matrix]] = [:]
        var embedding: NF4Matrix?, head: NF4Matrix?
        var names: Set<String> = []
        for entry in layout.entries where Self.quantizes(entry, embeddings: embeddings) {
            guard let values = parameters(entry) else { continue }
            let matrix = NF4Matrix(quantizing: values, rowCount: entry.shape[0], columnCount: entry.rowWidth, threads: threads)
            names.insert(entry.name)
            if case .layer(let layer) = entry.block, let projection = Self.projection(of: entry) {
                weights[layer, default: [:]][projection] = matrix
            } else if entry.role == .embedding {
                embedding = matrix
            } else {
                head = matrix
            }
        }
        self.weights = weights
        (self.embedding, self.head, self.names) = (embedding, head, names)
    }

    /// Whether QLoRA holds `entry` quantized: every layer projection, and with `embeddings` a
    /// frozen embedding table or lm_head (not one of `modules_to_save`).
    public static func quantizes(_ entry: ParameterLayout.Entry, embeddings: Bool) -> Bool {
        if projection(of: entry) != nil { return true }
        return embeddings && !entry.trainable && (entry.role == .embedding || entry.role == .languageModelHead)
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
    public var matrixCount: Int { matrices.count }
    public var byteCount: Int { matrices.reduce(0) { $0 + $1.byteCount } }
    /// The elements they quantize.
    public var elementCount: Int { matrices.reduce(0) { $0 + $1.count } }
    private var matrices: [NF4Matrix] { weights.values.flatMap(\.values) + [embedding, head].compactMap { $0 } }
}
