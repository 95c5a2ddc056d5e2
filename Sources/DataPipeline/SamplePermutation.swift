/// A pseudo-random permutation of 0..<count, keyed by (seed, epoch), computed one index at a
/// time in O(1) memory (so a billion samples need no billion-entry table): a balanced Feistel
/// network over the smallest even power of two ≥ count, with cycle walking to stay below count.
/// Round keys come from SplitMix64 seeded by seed and epoch. The same (count, seed, epoch) gives
/// the same order on every machine, rank count and Swift version.
public struct SamplePermutation: Sendable {
    public let count: Int
    private let halfBits: UInt64
    private let halfMask: UInt64
    private let keys: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    public init(count: Int, seed: UInt64, epoch: Int) {
        precondition(count >= 1)
        var bits: UInt64 = 2
        while bits < 64 && (UInt64(1) << bits) < UInt64(count) { bits += 2 }
        halfBits = bits / 2
        halfMask = (UInt64(1) << halfBits) - 1
        self.count = count
        var state = seed ^ Self.mix(UInt64(epoch) &+ 0x6A09_E667_F3BC_C909)
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            return Self.mix(state)
        }
        keys = (next(), next(), next(), next(), next(), next())
    }

    /// The SplitMix64 output function: a bijective 64-bit mixer.
    @inline(__always) static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The element at position `index` of the permuted order.
    public subscript(index: Int) -> Int {
        precondition(index >= 0 && index < count, "index \(index) outside 0..<\(count)")
        var value = UInt64(index)
        repeat { value = encrypt(value) } while value >= UInt64(count)
        return Int(value)
    }

    @inline(__always) private func encrypt(_ value: UInt64) -> UInt64 {
        var left = value >> halfBits
        var right = value & halfMask
        for key in [keys.0, keys.1, keys.2, keys.3, keys.4, keys.5] {
            (left, right) = (right, left ^ (Self.mix(right ^ key) & halfMask))
        }
        return left << halfBits | right
    }
}
