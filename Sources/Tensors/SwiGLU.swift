/// The gated activation of Llama's MLP: `output = silu(gate) · up`, silu(x) = x·σ(x).
///
///     gate, up, output  [count]   (rows × intermediateSize, flattened)
///
/// Nothing is saved beyond the inputs: backward recomputes σ(gate), which is cheaper than
/// storing another intermediate-sized activation.
public enum SwiGLU {
    public static func forward(
        output: UnsafeMutablePointer<Float>,
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        count: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<count, minimumChunk: 1 << 14) { range in
            var index = range.lowerBound
            while index + Vector.width <= range.upperBound {
                let g = Vector.load(gate + index)
                Vector.store(g * Vector.sigmoid(g) * Vector.load(up + index), output + index)
                index += Vector.width
            }
            while index < range.upperBound {
                let g = gate[index]
                output[index] = g * Vector.sigmoid(g) * up[index]
                index += 1
            }
        }
    }

    /// Accumulates
    ///
    ///     gateGradient += outputGradient · up · σ(gate)·(1 + gate·(1 − σ(gate)))
    ///     upGradient   += outputGradient · silu(gate)
    public static func backward(
        gateGradient: UnsafeMutablePointer<Float>, upGradient: UnsafeMutablePointer<Float>,
        outputGradient: UnsafePointer<Float>,
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
        count: Int, threads: KernelThreads = .single
    ) {
        threads.parallelFor(0..<count, minimumChunk: 1 << 14) { range in
            var index = range.lowerBound
            while index + Vector.width <= range.upperBound {
                let g = Vector.load(gate + index)
                let dy = Vector.load(outputGradient + index)
                let s = Vector.sigmoid(g)
                let silu = g * s
                let siluDerivative = s * (1 + g * (1 - s))
                Vector.store(Vector.load(gateGradient + index) + dy * Vector.load(up + index) * siluDerivative,
                             gateGradient + index)
                Vector.store(Vector.load(upGradient + index) + dy * silu, upGradient + index)
                index += Vector.width
            }
            while index < range.upperBound {
                let g = gate[index]
                let dy = outputGradient[index]
                let s = Vector.sigmoid(g)
                gateGradient[index] += dy * up[index] * (s * (1 + g * (1 - s)))
                upGradient[index] += dy * (g * s)
                index += 1
            }
        }
    }
}
