import DataPipeline
import Foundation
import Testing

/// A `.npy` file written by hand: magic, version, header dict padded to 64 bytes, data.
func npyFile(descr: String, shape: String, fortran: Bool = false, data: [UInt8], major: UInt8 = 1) -> [UInt8] {
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
    let prefixLength = major == 1 ? 10 : 12
    while (prefixLength + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
    let length = header.utf8.count
    bytes += major == 1 ? [UInt8(length & 0xFF), UInt8(length >> 8)]
                        : [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
    return bytes + Array(header.utf8) + data
}

/// Shards of `documents` (ByteTokenizer) in a fresh directory.
func writeShards(_ documents: [String], shardTokens: Int = 1 << 20, directory: String = scratchDirectory()) throws -> String {
    let tokenizer = ByteTokenizer()
    let writer = try TokenShardWriter(directory: directory, tokenizer: tokenizer.identity,
                                      options: .init(shardTokens: shardTokens, chunkTokens: 32))
    for document in documents { try writer.append(document: tokenizer.encode(document)) }
    try writer.finish()
    return directory
}

@Suite struct TokenDatasetTests {
    @Test func readsBinFilesOfEachType() throws {
        let directory = scratchDirectory()
        let values: [Int32] = (0..<1000).map { Int32(($0 * 613) % 50_000) }
        let cases: [(RawTokenType, [UInt8])] = [
            (.uint16, littleEndianBytes(values.map { UInt16($0) })),
            (.uint32, littleEndianBytes(values.map { UInt32($0) })),
            (.int32, littleEndianBytes(values)),
        ]
        for (type, bytes) in cases {
            let path = join(directory, "tokens-\(type.rawValue).bin")
            try write(bytes, to: path)
            let dataset = try TokenDataset.open(path, binType: type, eosId: 7)
            #expect(dataset.tokenCount == 1000 && dataset.eosId == 7 && dataset.vocabSize == nil)
            #expect(try dataset.tokens(0..<1000) == values)
            #expect(try dataset.tokens(995..<1000) == Array(values[995...]))
        }
        let odd = join(directory, "odd.bin")
        try write([1, 2, 3], to: odd)
        expectDataError("\(odd): 3 bytes is not a whole number of uint16 tokens (2 bytes each); is the dtype right?") {
            _ = try TokenDataset.open(odd)
        }
        let negative = join(directory, "negative.bin")
        try write(littleEndianBytes([Int32(5), -3]), to: negative)
        expectDataError("\(negative): token 1 is -3, not a token id (ids are 0...2147483647)") {
            _ = try TokenDataset.open(negative, binType: .int32).tokens(0..<2)
        }
    }

    @Test func readsNpyFiles() throws {
        let directory = scratchDirectory()
        let values: [Int32] = (0..<300).map { Int32(($0 * 97) % 60_000) }
        let cases: [(String, [UInt8], UInt8)] = [
            ("<u2", littleEndianBytes(values.map { UInt16($0) }), 1),
            ("<i4", littleEndianBytes(values), 1),
            ("<u4", littleEndianBytes(values.map { UInt32($0) }), 2),
            ("<i8", littleEndianBytes(values.map { Int64($0) }), 1),
        ]
        for (descr, data, major) in cases {
            let path = join(directory, "tokens\(descr.dropFirst()).npy")
            try write(npyFile(descr: descr, shape: "(300,)", data: data, major: major), to: path)
            let dataset = try TokenDataset.open(path)
            #expect(dataset.tokenCount == 300)
            #expect(try dataset.tokens(0..<300) == values)
        }
    }

    @Test func rejectsBadNpyFiles() throws {
        let directory = scratchDirectory()
        let floats = join(directory, "floats.npy")
        try write(npyFile(descr: "<f4", shape: "(2,)", data: [UInt8](repeating: 0, count: 8)), to: floats)
        expectDataError("\(floats): .npy dtype '<f4' is not a token id type (use '<u2', '<i4', '<u4' or '<i8')") {
            _ = try TokenDataset.open(floats)
        }
        let bigEndian = join(directory, "big.npy")
        try write(npyFile(descr: ">u2", shape: "(2,)", data: [0, 1, 0, 2]), to: bigEndian)
        expectDataError("\(bigEndian): .npy dtype '>u2' is not a token id type (use '<u2', '<i4', '<u4' or '<i8')") {
            _ = try TokenDataset.open(bigEndian)
        }
        let matrix = join(directory, "matrix.npy")
        try write(npyFile(descr: "<u2", shape: "(2, 3)", data: [UInt8](repeating: 0, count: 12)), to: matrix)
        expectDataError("\(matrix): .npy array has shape (2, 3); token ids must be a 1-D array") { _ = try TokenDataset.open(matrix) }
        let fortran = join(directory, "fortran.npy")
        try write(npyFile(descr: "<u2", shape: "(2,)", fortran: true, data: [0, 1, 0, 2]), to: fortran)
        expectDataError("\(fortran): .npy array is in Fortran order; token ids must be a 1-D C-order array") {
            _ = try TokenDataset.open(fortran)
        }
        let short = join(directory, "short.npy")
        try write(npyFile(descr: "<u2", shape: "(10,)", data: [UInt8](repeating: 0, count: 12)), to: short)
        expectDataError("\(short): .npy header says 10 tokens of '<u2' (20 bytes), but 12 bytes follow it") {
            _ = try TokenDataset.open(short)
        }
        let notNpy = join(directory, "text.npy")
        try write("just some text, long enough", to: notNpy)
        expectDataError("\(notNpy): not a .npy file (it does not start with \\x93NUMPY)") { _ = try TokenDataset.open(notNpy) }
        let other = join(directory, "tokens.txt")
        try write("1 2 3", to: other)
        expectDataError("\(other): not a token source (expected a directory with manifest.json, a .bin or a .npy file)") {
            _ = try TokenDataset.open(other)
        }
        expectDataError("/nonexistent/tokens.bin: no such file or directory") { _ = try TokenDataset.open("/nonexistent/tokens.bin") }
    }

    @Test func shardDirectoryErrorsNameTheFile() throws {
        let empty = scratchDirectory()
        expectDataError("\(empty): no manifest.json, so not a token shard directory (a directory without its manifest is incomplete: the writer did not finish)") {
            _ = try TokenDataset.open(empty)
        }

        let missing = try writeShards(sampleDocuments(count: 30), shardTokens: 200)
        try FileManager.default.removeItem(atPath: join(missing, "shard_00001.h5"))
        expectDataError("\(join(missing, "shard_00001.h5")): shard file is missing (listed in manifest.json)") {
            _ = try TokenDataset.open(missing)
        }

        // A manifest edited to disagree with the file: the token count check names both numbers.
        let mismatch = try writeShards(sampleDocuments(count: 30), shardTokens: 200)
        let manifestPath = join(mismatch, "manifest.json")
        var manifest = try JSONDecoder().decode(ShardManifest.self, from: try #require(FileManager.default.contents(atPath: manifestPath)))
        let actual = manifest.shards[0].tokens
        manifest.shards[0].tokens += 5
        manifest.totalTokens += 5
        try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
        expectDataError("\(join(mismatch, "shard_00000.h5")): holds \(actual) tokens, manifest.json says \(actual + 5)") {
            _ = try TokenDataset.open(mismatch)
        }
        manifest.totalTokens += 1
        try manifest.encoded().write(to: URL(fileURLWithPath: manifestPath))
        expectDataError("\(manifestPath): shards add up to \(manifest.totalTokens - 1) tokens and \(manifest.totalDocuments) documents, but total_tokens is \(manifest.totalTokens) and total_documents \(manifest.totalDocuments)") {
            _ = try TokenDataset.open(mismatch)
        }

        // Truncated: the size check catches it before HDF5 reads garbage.
        let truncated = try writeShards(sampleDocuments(count: 30), shardTokens: 200)
        let shardPath = join(truncated, "shard_00000.h5")
        let bytes = try #require(FileManager.default.contents(atPath: shardPath))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: shardPath))
        expectDataError("\(shardPath): \(bytes.count - 100) bytes, manifest.json says \(bytes.count) (truncated or replaced); write \(truncated) again with the meshlm data command that made it") {
            _ = try TokenDataset.open(truncated)
        }

        // Corrupt but the same size: only the checksum notices.
        let corrupt = try writeShards(sampleDocuments(count: 30), shardTokens: 200)
        let corruptPath = join(corrupt, "shard_00001.h5")
        var corruptBytes = [UInt8](try #require(FileManager.default.contents(atPath: corruptPath)))
        // Flip a bit inside the token data (found by its bytes), not in HDF5's own metadata.
        let firstTokens = littleEndianBytes(try TokenDataset.open(corrupt).tokens(
            try ShardManifest.read(directory: corrupt).shards[0].tokens..<(try ShardManifest.read(directory: corrupt).shards[0].tokens + 8)).map { UInt16($0) })
        let dataStart = try #require((0...(corruptBytes.count - firstTokens.count)).first { Array(corruptBytes[$0..<($0 + firstTokens.count)]) == firstTokens })
        corruptBytes[dataStart + 4] ^= 0x01
        try write(corruptBytes, to: corruptPath)
        _ = try TokenDataset.open(corrupt)   // the structure still checks out
        let digest = try SHA256.hex(ofFile: corruptPath)
        let recorded = try ShardManifest.read(directory: corrupt).shards[1].sha256
        expectDataError("\(corruptPath): SHA-256 \(digest) does not match manifest.json (\(recorded)): the file is corrupt") {
            _ = try TokenDataset.open(corrupt, verify: .checksums)
        }

        let badJSON = scratchDirectory()
        try write("{\"format\": \"meshlm-token-shards\"}", to: join(badJSON, "manifest.json"))
        expectDataError("\(join(badJSON, "manifest.json")): key 'format_version' is missing") { _ = try TokenDataset.open(badJSON) }
    }

    @Test func blockCacheReadsMatchAFullRead() throws {
        let documents = sampleDocuments(count: 80, seed: 5)
        let directory = try writeShards(documents, shardTokens: 300)
        let full = try TokenDataset.open(directory)
        let blocked = try TokenDataset.open(directory, cache: .init(fullyCachedTokens: 0, blockTokens: 37, blocks: 3))
        let expected = try full.tokens(0..<full.tokenCount)
        #expect(try ShardManifest.read(directory: directory).shards.count > 3)
        // Ranges that cross blocks and shard boundaries, in a scattered order.
        var generatorState: UInt64 = 12_345
        for _ in 0..<200 {
            generatorState = generatorState &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let start = Int(generatorState >> 33) % (expected.count - 1)
            let length = 1 + Int(generatorState >> 20) % min(150, expected.count - start)
            #expect(try blocked.tokens(start..<(start + length)) == Array(expected[start..<(start + length)]))
        }
        expectDataError("\(directory): tokens 10..<\(expected.count + 1) are outside the \(expected.count) tokens of the dataset") {
            _ = try blocked.tokens(10..<(expected.count + 1))
        }
    }
}
