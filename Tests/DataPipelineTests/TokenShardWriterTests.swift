import DataPipeline
import Foundation
import Runtime
import Testing

/// Documents of varied lengths (some multibyte) for the writer tests.
func sampleDocuments(count: Int, seed: Int = 1) -> [String] {
    let words = ["alpha", "beta", "γάμμα", "delta", "ε", "zeta", "日本", "theta", "iota", "kappa"]
    return (0..<count).map { index in
        let length = 3 + (index * 7 + seed * 13) % 17
        return (0..<length).map { words[($0 * 3 + index + seed) % words.count] }.joined(separator: " ")
    }
}

@Suite struct TokenShardWriterTests {
    @Test func roundTripsUInt16Shards() throws {
        let directory = scratchDirectory()
        let tokenizer = ByteTokenizer()
        let documents = sampleDocuments(count: 40)
        let writer = try TokenShardWriter(directory: directory, tokenizer: tokenizer.identity,
                                          options: .init(shardTokens: 400, chunkTokens: 64))
        for document in documents { try writer.append(document: tokenizer.encode(document)) }
        let manifest = try writer.finish()

        let expected: [Int32] = documents.flatMap { (text: String) -> [Int32] in tokenizer.encode(text) + [ByteTokenizer.eos] }
        #expect(manifest.totalTokens == expected.count)
        #expect(manifest.totalDocuments == documents.count)
        #expect(manifest.dtype == .uint16)
        #expect(manifest.shards.count > 1)

        // Each shard: documents whole, within the target size, offsets at document starts.
        var stream = [Int32]()
        var documentIndex = 0
        for (index, shard) in manifest.shards.enumerated() {
            #expect(shard.file == String(format: "shard_%05d.h5", index))
            #expect(shard.tokens <= 400)
            let file = try HDF5File.open(join(directory, shard.file))
            let tokens = try file.read(UInt16.self, dataset: "tokens").map { Int32($0) }
            let offsets = try file.read(Int64.self, dataset: "document_offsets")
            #expect(tokens.count == shard.tokens && offsets.count == shard.documents)
            for (k, offset) in offsets.enumerated() {
                let ids = tokenizer.encode(documents[documentIndex + k])
                #expect(Array(tokens[Int(offset)..<Int(offset) + ids.count]) == ids)
                #expect(tokens[Int(offset) + ids.count] == ByteTokenizer.eos)
            }
            #expect(tokens.last == ByteTokenizer.eos)
            documentIndex += offsets.count
            stream += tokens
        }
        #expect(stream == expected)

        let dataset = try TokenDataset.open(directory, verify: .checksums)
        #expect(dataset.tokenCount == expected.count)
        #expect(try dataset.tokens(0..<expected.count) == expected)
        #expect(dataset.eosId == 256 && dataset.vocabSize == 259)
    }

    @Test func roundTripsUInt32Shards() throws {
        let directory = scratchDirectory()
        let vocabulary = wideVocabulary()
        var documents = [[Int32]]()
        for document in 0..<12 {
            documents.append((0..<(5 + document)).map { (index: Int) -> Int32 in Int32((index * 9_973 + document * 31) % 99_999) })
        }
        let writer = try TokenShardWriter(directory: directory, tokenizer: vocabulary, options: .init(shardTokens: 50))
        for document in documents { try writer.append(document: document) }
        let manifest = try writer.finish()
        #expect(manifest.dtype == .uint32)
        let expected: [Int32] = documents.flatMap { (ids: [Int32]) -> [Int32] in ids + [99_999] }
        #expect(expected.contains { $0 > 65_535 })
        let file = try HDF5File.open(join(directory, manifest.shards[0].file))
        #expect(try file.read(UInt32.self, dataset: "tokens").map { Int32($0) } == Array(expected.prefix(manifest.shards[0].tokens)))
        let dataset = try TokenDataset.open(directory)
        #expect(try dataset.tokens(0..<dataset.tokenCount) == expected)
    }

    @Test func manifestRecordsEverything() throws {
        let directory = scratchDirectory()
        let tokenizer = ByteTokenizer()
        let writer = try TokenShardWriter(directory: directory, tokenizer: tokenizer.identity,
                                          options: .init(shardTokens: 30, chunkTokens: 16, deflateLevel: 3))
        for text in ["first document", "the second one", "3rd"] { try writer.append(document: tokenizer.encode(text)) }
        try writer.finish(inputs: [ShardManifest.Input(path: "in.jsonl", documents: 3, emptyDocuments: 1)])

        let data = try #require(FileManager.default.contents(atPath: join(directory, "manifest.json")))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["format"] as? String == "meshlm-token-shards")
        #expect(json["format_version"] as? Int == 1)
        #expect(json["vocab_size"] as? Int == 259)
        #expect(json["eos_id"] as? Int == 256)
        #expect(json["dtype"] as? String == "uint16")
        #expect(json["chunk_tokens"] as? Int == 16)
        #expect(json["deflate_level"] as? Int == 3)
        #expect(json["total_tokens"] as? Int == 15 + 15 + 4)
        #expect(json["total_documents"] as? Int == 3)
        let tokenizerJSON = try #require(json["tokenizer"] as? [String: Any])
        #expect(tokenizerJSON["name"] as? String == "bytes")
        #expect(tokenizerJSON["hash"] as? String == tokenizer.identity.hash)
        #expect(tokenizerJSON["vocab_size"] as? Int == 259)
        #expect(tokenizerJSON["eos_id"] as? Int == 256 && tokenizerJSON["bos_id"] as? Int == 257 && tokenizerJSON["pad_id"] as? Int == 258)
        let shards = try #require(json["shards"] as? [[String: Any]])
        // 15 + 15 tokens fill the first shard exactly; "3rd" + EOS would pass 30, so it starts the next.
        #expect(shards.map { $0["tokens"] as? Int } == [30, 4])
        #expect(shards.map { $0["documents"] as? Int } == [2, 1])
        for shard in shards {
            let path = join(directory, try #require(shard["file"] as? String))
            #expect(shard["sha256"] as? String == (try SHA256.hex(ofFile: path)))
            let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber
            #expect(shard["bytes"] as? Int == size?.intValue)
        }
        let inputs = try #require(json["inputs"] as? [[String: Any]])
        #expect(inputs.first?["path"] as? String == "in.jsonl" && inputs.first?["empty_documents"] as? Int == 1)
        // No temporary files remain.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["manifest.json", "shard_00000.h5", "shard_00001.h5"])
    }

    @Test func sameInputGivesSameBytes() throws {
        func writeOnce(_ directory: String) throws {
            let tokenizer = ByteTokenizer()
            let writer = try TokenShardWriter(directory: directory, tokenizer: tokenizer.identity,
                                              options: .init(shardTokens: 500, chunkTokens: 64, deflateLevel: 1))
            for document in sampleDocuments(count: 60, seed: 3) { try writer.append(document: tokenizer.encode(document)) }
            try writer.finish()
        }
        let first = scratchDirectory(), second = scratchDirectory()
        try writeOnce(first)
        sleep(1)   // HDF5 would record different modification times a second apart
        try writeOnce(second)
        let names = try FileManager.default.contentsOfDirectory(atPath: first).sorted()
        #expect(names == (try FileManager.default.contentsOfDirectory(atPath: second).sorted()))
        #expect(names.count > 2)
        for name in names {
            #expect(FileManager.default.contents(atPath: join(first, name)) == FileManager.default.contents(atPath: join(second, name)),
                    "\(name) differs between two runs (HDF5 object headers with modification times? HDF5File.write must call H5Pset_obj_track_times(properties, false))")
        }
    }

    @Test func refusesNonEmptyOutputUnlessOverwrite() throws {
        let directory = scratchDirectory()
        let tokenizer = ByteTokenizer()
        func shard(_ documents: [String], overwrite: Bool, shardTokens: Int) throws -> ShardManifest {
            let writer = try TokenShardWriter(directory: directory, tokenizer: tokenizer.identity,
                                              options: .init(shardTokens: shardTokens, overwrite: overwrite))
            for document in documents { try writer.append(document: tokenizer.encode(document)) }
            return try writer.finish()
        }
        _ = try shard(sampleDocuments(count: 30), overwrite: false, shardTokens: 100)
        try write("keep me", to: join(directory, "notes.txt"))
        expectDataError("\(directory): output directory exists and is not empty (choose another, or pass --overwrite to replace its shards)") {
            _ = try shard(["x"], overwrite: false, shardTokens: 100)
        }
        let manifest = try shard(["one small document"], overwrite: true, shardTokens: 100)
        #expect(manifest.shards.count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["manifest.json", "notes.txt", "shard_00000.h5"])
        #expect(try TokenDataset.open(directory).tokenCount == 19)
    }

    @Test func rejectsIdsOutsideTheVocabulary() throws {
        let writer = try TokenShardWriter(directory: scratchDirectory(), tokenizer: ByteTokenizer().identity)
        try writer.append(document: [1, 2, 3])
        expectDataError("token id 259 of document 1 is outside the vocabulary of 259 ids") { try writer.append(document: [4, 259]) }
        writer.abandon()
    }
}
