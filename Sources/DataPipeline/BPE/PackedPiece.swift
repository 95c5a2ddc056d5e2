/// A piece of up to 15 bytes packed into two words with its length: a dictionary key that
/// needs no allocation (pieces are short; the encoder cache and the trainer's counts look one
/// up per piece of text).
struct PackedPiece: Hashable {
    var low: UInt64
    var high: UInt64

    static let maximumLength = 15

    /// Nil when `piece` is longer than `maximumLength`.
    @inline(__always)
    init?(_ piece: UnsafeBufferPointer<UInt8>) {
        guard piece.count <= Self.maximumLength else { return nil }
        low = 0
        // The length in the top byte of `high` tells "ab" from "ab\0".
        high = UInt64(piece.count) << 56
        for index in 0..<piece.count {
            if index < 8 { low |= UInt64(piece[index]) << (8 * index) } else { high |= UInt64(piece[index]) << (8 * (index - 8)) }
        }
    }

    /// The bytes back.
    var bytes: [UInt8] {
        let length = Int(high >> 56)
        return (0..<length).map { index in
            index < 8 ? UInt8(truncatingIfNeeded: low >> (8 * index)) : UInt8(truncatingIfNeeded: high >> (8 * (index - 8)))
        }
    }
}
