import Foundation

/// A small, fast, deterministic random number generator (SplitMix64, Steele, Lea and Flood 2014).
///
/// Used for parameter initialization and test data: the same seed gives the same stream on every
/// machine and toolchain, which is what makes a run reproducible from `train.seed`. Independent
/// streams (per purpose, per rank) come from `init(seed:stream:)`, which mixes the stream number
/// into the seed so nearby streams are uncorrelated.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    /// A generator for stream `stream` of `seed` (e.g. stream = rank, or a purpose tag).
    public init(seed: UInt64, stream: UInt64) {
        var mixer = SplitMix64(seed: stream &* 0xD1B5_4A32_D192_ED03)
        state = seed ^ mixer.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    public mutating func nextUniform() -> Float {
        Float(next() >> 40) * 0x1p-24
    }

    /// A standard normal sample (Box–Muller in Double, one sample per call so the stream position
    /// depends only on how many samples were drawn).
    public mutating func nextNormal() -> Float {
        let u1 = (Double(next() >> 11) + 0.5) * 0x1p-53
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
