/// An owning, contiguous, 64-byte-aligned fp32 buffer with a shape.
///
/// Deliberately small: kernels take raw pointers (llm.c style), so `Tensor` only owns memory and
/// knows its shape. The model carves its parameters and activations as views out of one arena;
/// `Tensor` is that arena, or a standalone buffer in tests and tools. Freshly created tensors are
/// zero. Alignment to 64 bytes (one AVX-512 vector, one cache line) keeps vector loads from
/// splitting cache lines.
public final class Tensor {
    /// Dimensions, outermost first (row-major).
    public let shape: [Int]
    /// Number of elements, the product of `shape`.
    public let count: Int
    /// The first element. Valid for `count` elements while the tensor is alive.
    public let pointer: UnsafeMutablePointer<Float>

    public static let alignment = 64

    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "tensor dimensions must be non-negative: \(shape)")
        self.shape = shape
        count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: Swift.max(count, 1) * MemoryLayout<Float>.stride, alignment: Tensor.alignment)
        pointer = raw.initializeMemory(as: Float.self, repeating: 0, count: Swift.max(count, 1))
    }

    /// A tensor holding `values` (row-major), whose count must match `shape`.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape) (\(count) elements)")
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: count) }
        }
    }

    deinit {
        UnsafeMutableRawPointer(pointer).deallocate()
    }

    /// The elements as a buffer (for iteration and `Array(tensor.buffer)`).
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// A copy of the elements.
    public var values: [Float] { Array(buffer) }

    public func zero() {
        fill(0)
    }

    public func fill(_ value: Float) {
        pointer.update(repeating: value, count: count)
    }

    /// Fills with samples of N(mean, standardDeviation²) drawn in element order from `generator`.
    public func fillNormal(mean: Float = 0, standardDeviation: Float, generator: inout SplitMix64) {
        for index in 0..<count {
            pointer[index] = mean + standardDeviation * generator.nextNormal()
        }
    }

    /// Fills with samples of U[lower, upper) drawn in element order from `generator`.
    public func fillUniform(lower: Float, upper: Float, generator: inout SplitMix64) {
        let width = upper - lower
        for index in 0..<count {
            pointer[index] = lower + width * generator.nextUniform()
        }
    }
}
