import Foundation

/// What dedup keeps of one document between its passes: where it is, its exact-text hash, its
/// LSH band keys and its size. Written per work unit (`OUT/.work/signatures/NNNNN.bin`) by
/// the rank that read the unit, so the exchange and a resumed run need not read text again.
struct DocumentSignature: Equatable {
    /// `unit << 32 | line`: the document's place in the input order, the same on any rank count.
    var ordinal: UInt64
    var exactHigh: UInt64
    var exactLow: UInt64
    /// Empty when the document has no words (no MinHash).
    var bandKeys: [UInt64]
    var textBytes: UInt64

    static func ordinal(unit: Int, line: Int) -> UInt64 { UInt64(unit) << 32 | UInt64(line) }
    static func unit(of ordinal: UInt64) -> Int { Int(ordinal >> 32) }
}

/// The signature file of one unit: a little-endian UInt64 stream, per document
/// `ordinal, exactHigh, exactLow, textBytes, bandCount, bandKeys…`; and beside it the ids as
/// `ordinal, length (UInt64s), UTF-8 bytes` (for `duplicate_of` lookups).
enum SignatureFile {
    static func write(_ signatures: [DocumentSignature], ids: [String], path: String, idsPath: String) throws(DataError) {
        var words = [UInt64]()
        words.reserveCapacity(signatures.count * (5 + (signatures.first?.bandKeys.count ?? 0)))
        for signature in signatures {
            words += [signature.ordinal, signature.exactHigh, signature.exactLow, signature.textBytes, UInt64(signature.bandKeys.count)]
            words += signature.bandKeys
        }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(words.withUnsafeBytes { Array($0) })
        try writer.finish()
        var idBytes = [UInt8]()
        for (signature, id) in zip(signatures, ids) {
            withUnsafeBytes(of: signature.ordinal.littleEndian) { idBytes += $0 }
            withUnsafeBytes(of: UInt64(id.utf8.count).littleEndian) { idBytes += $0 }
            idBytes += id.utf8
        }
        let idWriter = try AtomicFileWriter(path: idsPath)
        try idWriter.write(idBytes)
        try idWriter.finish()
    }

    static func read(path: String) throws(DataError) -> [DocumentSignature] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("\(path): missing (dedup's signature file); delete the output directory and rerun")
        }
        let words = data.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
        var signatures = [DocumentSignature]()
        var index = 0
        while index + 5 <= words.count {
            let bandCount = Int(words[index + 4])
            guard index + 5 + bandCount <= words.count else { break }
            signatures.append(DocumentSignature(ordinal: words[index], exactHigh: words[index + 1], exactLow: words[index + 2],
                                                bandKeys: Array(words[(index + 5)..<(index + 5 + bandCount)]),
                                                textBytes: words[index + 3]))
            index += 5 + bandCount
        }
        guard index == words.count else { throw DataError("\(path): corrupt signature file; delete the output directory and rerun") }
        return signatures
    }

    /// The ids of a unit's documents by ordinal.
    static func readIds(path: String) throws(DataError) -> [UInt64: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("\(path): missing (dedup's id file); delete the output directory and rerun")
        }
        var ids = [UInt64: String]()
        var offset = 0
        let bytes = [UInt8](data)
        func word(_ at: Int) -> UInt64 {
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
        }
        while offset + 16 <= bytes.count {
            let ordinal = word(offset)
            let length = Int(word(offset + 8))
            offset += 16
            guard offset + length <= bytes.count else { break }
            ids[ordinal] = String(decoding: bytes[offset..<offset + length], as: UTF8.self)
            offset += length
        }
        guard offset == bytes.count else { throw DataError("\(path): corrupt id file; delete the output directory and rerun") }
        return ids
    }
}
