import Checkpoint
import Testing

/// CRC-32C against published vectors (RFC 3720 appendix B.4 and the "123456789" check value).
@Suite struct CRC32CTests {
    @Test func knownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
        #expect(CRC32C.checksum([]) == 0)
    }

    /// The hardware instruction (where present) and slicing-by-8 agree at every length and
    /// alignment, and on the known vectors.
    @Test func hardwareAndPortableAgree() {
        let bytes: [UInt8] = (0..<4100).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        let saved = CRC32C.useHardware
        defer { CRC32C.useHardware = saved }
        for start in [0, 1, 3, 8] {
            for length in [0, 1, 7, 8, 9, 63, 4000] {
                let slice = Array(bytes[start..<(start + length)])
                CRC32C.useHardware = false
                let portable = CRC32C.checksum(slice)
                CRC32C.useHardware = saved
                #expect(CRC32C.checksum(slice) == portable, "start \(start) length \(length)")
            }
        }
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    /// Slicing-by-8 and the byte loop agree at every length and alignment, and pieces chain.
    @Test func piecesChainAndLengthsAgree() {
        let bytes: [UInt8] = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let whole = CRC32C.checksum(bytes)
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let chained = bytes.withUnsafeBytes { raw in
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[split...]),
                                continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<split])))
            }
            #expect(chained == whole, "split at \(split)")
        }
    }
}
