/// MinHash signatures and LSH band keys (Broder 1997; Leskovec et al., *Mining of Massive
/// Datasets* §3.4). The signature has `bands × rows` minima, each over one hash function
/// hᵢ(x) = aᵢ·x + cᵢ mod 2⁶⁴ (aᵢ odd) of the 64-bit shingle hashes — a permutation of the
/// well-mixed shingle hash space per function. Two documents with shingle Jaccard similarity s
/// share a given band with probability s^rows, so they share at least one of the bands with
/// probability 1 − (1 − s^rows)^bands (14 × 8: 0.5 at s ≈ 0.72, 0.93 at s = 0.8, 0.999 at 0.9).
///
/// The functions run in 8-lane vectors, so the inner loop is a multiply, an add and a minimum
/// per 8 functions (one instruction each with AVX-512).
struct MinHasher {
    let bands: Int
    let rows: Int
    private let multipliers: [SIMD8<UInt64>]
    private let offsets: [SIMD8<UInt64>]
    private let functionCount: Int

    init(bands: Int, rows: Int, seed: UInt64 = 0x5EED_0F_D3D0_0000) {
        self.bands = bands
        self.rows = rows
        functionCount = bands * rows
        let vectors = (functionCount + 7) / 8
        var state = seed
        func next() -> UInt64 {
            // splitmix64: a fixed stream of well-spread 64-bit values.
            state &+= 0x9E37_79B9_7F4A_7C15
            return TextHashing.mix(state)
        }
        var multipliers = [SIMD8<UInt64>](repeating: .zero, count: vectors)
        var offsets = [SIMD8<UInt64>](repeating: .zero, count: vectors)
        for vector in 0..<vectors {
            for lane in 0..<8 {
                multipliers[vector][lane] = next() | 1
                offsets[vector][lane] = next()
            }
        }
        self.multipliers = multipliers
        self.offsets = offsets
    }

    /// The signature of a set of shingles, as `bands × rows` values; all `UInt64.max` when there
    /// are none. One lane group at a time over all shingles, so its minima stay in a register.
    func signature(of shingles: UnsafeBufferPointer<UInt64>) -> [UInt64] {
        var result = [UInt64](repeating: .max, count: multipliers.count * 8)
        multipliers.withUnsafeBufferPointer { multipliers in
            offsets.withUnsafeBufferPointer { offsets in
                result.withUnsafeMutableBufferPointer { result in
                    for vector in 0..<multipliers.count {
                        let multiplier = multipliers[vector], offset = offsets[vector]
                        var minimum = SIMD8<UInt64>(repeating: .max)
                        for shingle in shingles {
                            minimum = pointwiseMin(minimum, multiplier &* SIMD8(repeating: shingle) &+ offset)
                        }
                        for lane in 0..<8 { result[vector * 8 + lane] = minimum[lane] }
                    }
                }
            }
        }
        result.removeLast(result.count - functionCount)
        return result
    }

    /// The signature of the shingles in `shingles`.
    func signature(_ shingles: [UInt64]) -> [UInt64] {
        shingles.withUnsafeBufferPointer { signature(of: $0) }
    }

    /// One 64-bit key per band: the band's `rows` minima hashed together with the band number,
    /// so equal keys mean (up to 2⁻⁶⁴ collisions) equal bands.
    func bandKeys(_ signature: [UInt64]) -> [UInt64] {
        (0..<bands).map { band in
            var key = TextHashing.mix(UInt64(band) &+ 0x0BAD_5EED)
            for row in 0..<rows { key = TextHashing.mix(key ^ signature[band * rows + row]) }
            return key
        }
    }
}
