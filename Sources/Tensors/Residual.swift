/// A residual connection: `output = a + b`.
///
///     a, b, output  [count]   (any shape, flattened; output may be a or b)
public enum Residual {
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        count: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<count, minimumChunk: 1 << 14) { range in
            var index = range.lowerBound
            while index + Vector.width <= range.upperBound {
                Vector.store(Vector.load(a + index) + Vector.load(b + index), output + index)
                index += Vector.width
            }
            while index < range.upperBound {
                output[index] = a[index] + b[index]
                index += 1
            }
        }
    }

    /// The gradient flows to both summands unchanged: `aGradient += outputGradient`,
    /// `bGradient += outputGradient`.
    public static func backward(
        aGradient: UnsafeMutablePointer<Float>, bGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>,
        count: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<count, minimumChunk: 1 << 14) { range in
            var index = range.lowerBound
            while index + Vector.width <= range.upperBound {
                let gradient = Vector.load(outputGradient + index)
                Vector.store(Vector.load(aGradient + index) + gradient, aGradient + index)
                Vector.store(Vector.load(bGradient + index) + gradient, bGradient + index)
                index += Vector.width
            }
            while index < range.upperBound {
                aGradient[index] += outputGradient[index]
                bGradient[index] += outputGradient[index]
                index += 1
            }
        }
    }
}
