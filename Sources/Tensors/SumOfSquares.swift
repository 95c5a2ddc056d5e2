/// Σ x² of a flat buffer, for the global gradient norm: vector fp32 partial sums over blocks of
/// 4096 elements, each block's sum added into a Double in block order. A fixed order (the same
/// for any thread count) and Double across blocks keep it deterministic and accurate; vector
/// code keeps it at memory speed (a scalar Double loop runs several times slower).
public enum SumOfSquares {
    static let blockSize = 4096

    ///     values  [count]
    public static func compute(_ values: UnsafePointer<Float>, count: Int) -> Double {
        var total = 0.0
        var blockStart = 0
        while blockStart < count {
            let blockEnd = Swift.min(blockStart + blockSize, count)
            var lanes = (Vector.Lanes(), Vector.Lanes())
            var index = blockStart
            while index + 2 * Vector.width <= blockEnd {
                let a = Vector.load(values + index), b = Vector.load(values + index + Vector.width)
                lanes.0.addProduct(a, a)
                lanes.1.addProduct(b, b)
                index += 2 * Vector.width
            }
            var block = Double(Vector.horizontalSum(lanes.0 + lanes.1))
            while index < blockEnd {
                block += Double(values[index]) * Double(values[index])
                index += 1
            }
            total += block
            blockStart = blockEnd
        }
        return total
    }
}
