/// Elements `elements` of the flattened tensor `name` (of global shape `shape`), as one rank saves them.
public struct CheckpointSliceValues: Sendable {
    public let name: String
    public let shape: [Int]
    public let elements: Range<Int>
    public let values: [Float]

    public init(name: String, shape: [Int], elements: Range<Int>, values: [Float]) {
        precondition(values.count == elements.count, "tensor \(name): \(values.count) values for elements \(elements)")
        self.name = name
        self.shape = shape
        self.elements = elements
        self.values = values
    }
}
