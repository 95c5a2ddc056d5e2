/// Elements `elements` of the flattened tensor `name` (of global shape `shape`), as one rank saves them:
/// f32 `values`, or for a block format (`CheckpointDType.q8_0`, `.q4_0`) its `encoded` blocks.
public struct CheckpointSliceValues: Sendable {
    public let name: String
    public let shape: [Int]
    public let elements: Range<Int>
    public let dtype: CheckpointDType
    /// The f32 elements (empty for a block format).
    public let values: [Float]
    /// A block format's bytes, `dtype.byteCount(elements: elements.count)` of them (empty for f32).
    public let encoded: [UInt8]

    public init(name: String, shape: [Int], elements: Range<Int>, values: [Float]) {
        precondition(values.count == elements.count, "tensor \(name): \(values.count) values for elements \(elements)")
        self.name = name
        self.shape = shape
        self.elements = elements
        self.dtype = .f32
        self.values = values
        self.encoded = []
    }

    /// A slice of a block-format tensor: `elements` start and end on block boundaries.
    public init(name: String, shape: [Int], elements: Range<Int>, dtype: CheckpointDType, encoded: [UInt8]) {
        precondition(dtype.isQuantized && elements.lowerBound % dtype.elementsPerBlock == 0 && elements.count % dtype.elementsPerBlock == 0
                     && encoded.count == dtype.byteCount(elements: elements.count),
                     "tensor \(name): \(encoded.count) bytes of \(dtype.rawValue) for elements \(elements)")
        self.name = name
        self.shape = shape
        self.elements = elements
        self.dtype = dtype
        self.values = []
        self.encoded = encoded
    }
}
