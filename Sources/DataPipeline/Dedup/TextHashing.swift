/// The hash functions of deduplication: a 64-bit finalizer, a 128-bit content hash, and the
/// word-n-gram shingle hashes MinHash is computed over. Fixed constants, so every rank and
/// every run hashes alike.
enum TextHashing {
    /// A 64-bit avalanche finalizer (MurmurHash3's): every input bit affects every output bit.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var bits = value
        bits ^= bits >> 33
        bits &*= 0xFF51_AFD7_ED55_8CCD
        bits ^= bits >> 33
        bits &*= 0xC4CE_B9FE_1A85_EC53
        bits ^= bits >> 33
        return bits
    }

    @inline(__always)
    private static func fold(_ left: UInt64, _ right: UInt64) -> UInt64 {
        let product = left.multipliedFullWidth(by: right)
        return product.high ^ product.low
    }

    /// A 128-bit hash of `bytes`: two independently seeded lanes of multiply-fold over 8-byte
    /// words, so two different texts collide with probability ~2⁻¹²⁸ (exact dedup compares
    /// hashes, never texts).
    static func hash128(_ bytes: UnsafeBufferPointer<UInt8>) -> (high: UInt64, low: UInt64) {
        var first: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(bytes.count)
        var second: UInt64 = 0x1319_8A2E_0370_7344 ^ (UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15)
        var index = 0
        let count = bytes.count
        if let base = bytes.baseAddress {
            while index + 8 <= count {
                let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
                first = fold(first ^ word, 0xA409_3822_299F_31D0)
                second = fold(second ^ (word &+ 0x082E_FA98_EC4E_6C89), 0x4528_21E6_38D0_1377)
                index += 8
            }
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while index < count {
                tail |= UInt64(base[index]) << shift
                shift += 8
                index += 1
            }
            first = fold(first ^ tail, 0xBE54_66CF_34E9_0C6C)
            second = fold(second ^ (tail &+ 0xC0AC_29B7_C97C_50DD), 0x3F84_D5B5_B547_0917)
        }
        return (mix(first ^ (second >> 29)), mix(second ^ (first >> 31)))
    }
}

/// Normalization for exact dedup: runs of ASCII whitespace (space, tab, newline, carriage
/// return, form feed, vertical tab) become one space and leading/trailing whitespace is dropped;
/// every other byte is kept (case, punctuation and Unicode are significant). Two documents are
/// exact duplicates when their normalized texts are equal (compared by `TextHashing.hash128`).
struct ExactNormalizer {
    private var buffer = [UInt8]()

    @inline(__always)
    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
    }

    /// The 128-bit hash of `text`'s normalized form.
    mutating func hash(_ text: inout String) -> (high: UInt64, low: UInt64) {
        buffer.removeAll(keepingCapacity: true)
        text.withUTF8 { bytes in
            var pendingSpace = false
            for byte in bytes {
                if Self.isSpace(byte) {
                    pendingSpace = !buffer.isEmpty
                    continue
                }
                if pendingSpace {
                    buffer.append(0x20)
                    pendingSpace = false
                }
                buffer.append(byte)
            }
        }
        return buffer.withUnsafeBufferPointer { TextHashing.hash128($0) }
    }
}
