import CSupport

/// CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected as 0x82F63B78), the checksum that
/// iSCSI, ext4 and Parquet use: the checksum of every slice's uncompressed bytes in a checkpoint
/// index. The SSE4.2 `crc32` instruction where the CPU has it (~10× faster, so checksumming
/// does not slow saves down), otherwise slicing-by-8 in plain Swift; tests check both agree.
public enum CRC32C {
    /// Whether the hardware path is used (false forces the portable one, for tests).
    nonisolated(unsafe) public static var useHardware = meshlm_crc32c_hardware() != 0

    /// Eight 256-entry tables: table k maps a byte to its CRC after k further zero bytes.
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][byte] = crc
        }
        for byte in 0..<256 {
            for k in 1..<8 {
                let previous = tables[k - 1][byte]
                tables[k][byte] = (previous >> 8) ^ tables[0][Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// The CRC-32C of `bytes`, continuing from `crc` (the checksum of the bytes before them; 0
    /// to start), so a buffer may be checksummed in pieces.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var state = ~crc
        guard let base = bytes.baseAddress else { return crc }
        let count = bytes.count
        if useHardware { return ~meshlm_crc32c_update(state, base, Int64(count)) }
        let t = tables
        return t[0].withUnsafeBufferPointer { t0 in t[1].withUnsafeBufferPointer { t1 in
            t[2].withUnsafeBufferPointer { t2 in t[3].withUnsafeBufferPointer { t3 in
            t[4].withUnsafeBufferPointer { t4 in t[5].withUnsafeBufferPointer { t5 in
            t[6].withUnsafeBufferPointer { t6 in t[7].withUnsafeBufferPointer { t7 in
                var index = 0
                while index + 8 <= count {
                    let low = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt32.self)) ^ state
                    let high = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
                    state = t7[Int(low & 0xFF)] ^ t6[Int((low >> 8) & 0xFF)] ^ t5[Int((low >> 16) & 0xFF)] ^ t4[Int(low >> 24)]
                        ^ t3[Int(high & 0xFF)] ^ t2[Int((high >> 8) & 0xFF)] ^ t1[Int((high >> 16) & 0xFF)] ^ t0[Int(high >> 24)]
                    index += 8
                }
                while index < count {
                    state = (state >> 8) ^ t0[Int((state ^ UInt32(base.load(fromByteOffset: index, as: UInt8.self))) & 0xFF)]
                    index += 1
                }
                return ~state
            } } } } } } }
        }
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
