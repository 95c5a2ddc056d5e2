import DataPipeline
import Foundation
import Runtime
import Testing

@Suite struct TextShardingTests {
    /// Zstd frames of `text` split into `pieces` frames (a multi-frame file, as `cat a.zst b.zst`).
    func zstdFile(_ text: String, pieces: Int, path: String) throws {
        let bytes = Array(text.utf8)
        let size = (bytes.count + pieces - 1) / pieces
        var file = [UInt8]()
        for start in stride(from: 0, to: bytes.count, by: size) {
            file += try Zstd.compress(Array(bytes[start..<min(start + size, bytes.count)]))
        }
        try write(file, to: path)
    }

    @Test func readsJSONLZstdAndText() throws {
        let directory = scratchDirectory()
        let inputs = join(directory, "in")
        try FileManager.default.createDirectory(atPath: join(inputs, "sub"), withIntermediateDirectories: true)
        try write("{\"id\": 1, \"text\": \"first ünïcode\"}\n\n{\"text\": \"second\", \"extra\": [1, 2]}\r\n{\"text\": \"\"}\n{\"text\": \"no newline at end\"}",
                  to: join(inputs, "a.jsonl"))
        let lines = (0..<200).map { "{\"body\": \"document number \($0) with some text\"}" }.joined(separator: "\n") + "\n"
        try zstdFile(lines, pieces: 3, path: join(inputs, "sub/b.jsonl.zst"))
        try write("a whole text file is one document\n", to: join(inputs, "c.txt"))
        try write("ignored", to: join(inputs, "README.md"))

        let expanded = try DocumentReader.expand([inputs])
        #expect(expanded.files == [join(inputs, "a.jsonl"), join(inputs, "c.txt"), join(inputs, "sub/b.jsonl.zst")])
        #expect(expanded.ignored == 1)

        // a.jsonl and c.txt read the "text" field; b.jsonl.zst needs --text-field body.
        let output = join(directory, "shards")
        let manifest = try TextSharding.run(files: [join(inputs, "a.jsonl"), join(inputs, "c.txt")], output: output,
                                            tokenizer: ByteTokenizer())
        #expect(manifest.inputs == [ShardManifest.Input(path: join(inputs, "a.jsonl"), documents: 3, emptyDocuments: 1),
                                    ShardManifest.Input(path: join(inputs, "c.txt"), documents: 1, emptyDocuments: 0)])
        let dataset = try TokenDataset.open(output)
        let expected = ["first ünïcode", "second", "no newline at end", "a whole text file is one document\n"]
            .flatMap { (text: String) -> [Int32] in ByteTokenizer().encode(text) + [256] }
        #expect(try dataset.tokens(0..<dataset.tokenCount) == expected)

        let zstdOutput = join(directory, "zstd-shards")
        let zstdManifest = try TextSharding.run(files: [join(inputs, "sub/b.jsonl.zst")], output: zstdOutput, tokenizer: ByteTokenizer(),
                                                options: .init(textField: "body"))
        #expect(zstdManifest.totalDocuments == 200)
        let zstdData = try TokenDataset.open(zstdOutput)
        let text = ByteTokenizer().decode(try zstdData.tokens(0..<zstdData.tokenCount))
        #expect(text == (0..<200).map { "document number \($0) with some text" }.joined())
    }

    @Test func badInputsNameFileAndLine() throws {
        let directory = scratchDirectory()
        func shardError(_ content: String, name: String = "bad.jsonl", field: String = "text") -> String? {
            let path = join(directory, name)
            try? write(content, to: path)
            let output = join(directory, "out-\(UUID().uuidString.prefix(6))")
            do {
                try TextSharding.run(files: [path], output: output, tokenizer: ByteTokenizer(), options: .init(textField: field))
                return nil
            } catch {
                // A failed run leaves nothing behind: the directory it created is gone again.
                #expect(!FileManager.default.fileExists(atPath: output))
                return "\(error)"
            }
        }
        let path = join(directory, "bad.jsonl")
        #expect(shardError("{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": broken}\n") == "\(path):3: malformed JSON at byte 10: unexpected character (expected a value)")
        #expect(shardError("{\"text\": \"ok\"}\n[1, 2]\n") == "\(path):2: expected a JSON object, found an array")
        #expect(shardError("{\"content\": \"no text\"}\n") == "\(path):1: no 'text' field (--text-field names the field that holds the text)")
        #expect(shardError("{\"text\": 42}\n") == "\(path):1: field 'text' is a number, not a string")
        #expect(shardError("{\"body\": null}\n", field: "body") == "\(path):1: field 'body' is null, not a string")
        #expect(shardError("{\"text\": true}\n") == "\(path):1: field 'text' is a boolean, not a string")
        #expect(shardError("{\"text\": 1}\n") == "\(path):1: field 'text' is a number, not a string")
        #expect(shardError("{\"text\": [\"a\"]}\n") == "\(path):1: field 'text' is an array, not a string")
        // Enough documents to fill several shards before the bad line: all of them are removed.
        let many = (0..<300).map { "{\"text\": \"document \($0)\"}" }.joined(separator: "\n") + "\n{oops\n"
        let manyPath = join(directory, "many.jsonl")
        try write(many, to: manyPath)
        // Into an existing directory: the shards are removed, the directory and other files stay.
        let output = join(directory, "partial")
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        expectDataError("\(manyPath):301: malformed JSON at byte 2: expected a quoted field name") {
            try TextSharding.run(files: [manyPath], output: output, tokenizer: ByteTokenizer(),
                                 options: .init(writer: .init(shardTokens: 100)))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: output) == [])

        let truncated = join(directory, "truncated.jsonl.zst")
        let frame = try Zstd.compress(Array(String(repeating: "{\"text\": \"abc\"}\n", count: 100).utf8))
        try write(Array(frame.prefix(frame.count - 6)), to: truncated)
        expectDataError("\(truncated):1: truncated zstd stream (the file ends inside a frame)") {
            try TextSharding.run(files: [truncated], output: join(directory, "t"), tokenizer: ByteTokenizer())
        }
        let notZstd = join(directory, "plain.jsonl.zst")
        try write("{\"text\": \"not compressed\"}\n", to: notZstd)
        expectDataError("\(notZstd):1: not a valid zstd stream: Unknown frame descriptor") {
            try TextSharding.run(files: [notZstd], output: join(directory, "z"), tokenizer: ByteTokenizer())
        }
        let latin1 = join(directory, "latin1.txt")
        try write([0x63, 0x61, 0x66, 0xE9], to: latin1)
        expectDataError("\(latin1): not valid UTF-8 text") {
            try TextSharding.run(files: [latin1], output: join(directory, "l"), tokenizer: ByteTokenizer())
        }

        expectDataError("/nonexistent/input.jsonl: no such file or directory") { _ = try DocumentReader.expand(["/nonexistent/input.jsonl"]) }
        let csv = join(directory, "data.csv")
        try write("a,b", to: csv)
        expectDataError("\(csv): unknown input format (expected .jsonl, .jsonl.zst or .txt)") { _ = try DocumentReader.expand([csv]) }
        let noInputs = join(directory, "empty-dir")
        try FileManager.default.createDirectory(atPath: noInputs, withIntermediateDirectories: true)
        expectDataError("\(noInputs): no .jsonl, .jsonl.zst or .txt files in the directory") { _ = try DocumentReader.expand([noInputs]) }
    }

    /// The shipped corpus shards cleanly, and its manifest adds up to what was read.
    @Test func shipsACorpusThatShards() throws {
        let corpus = join(repositoryRoot, "data/corpus")
        let files = [join(corpus, "train.jsonl.zst"), join(corpus, "eval.jsonl.zst")]
        var expectedTokens = [0, 0], expectedDocuments = [0, 0]
        for (index, file) in files.enumerated() {
            let reader = try DocumentReader(path: file)
            while let document = try reader.next() {
                expectedTokens[index] += document.text.utf8.count + 1
                expectedDocuments[index] += 1
            }
        }
        #expect(expectedDocuments[0] > 1000 && expectedDocuments[1] > 20)
        #expect(expectedTokens[0] > 3_000_000)

        let output = join(scratchDirectory(), "train")
        let manifest = try TextSharding.run(files: [files[0]], output: output, tokenizer: ByteTokenizer(),
                                            options: .init(writer: .init(shardTokens: 1 << 20)))
        #expect(manifest.totalTokens == expectedTokens[0])
        #expect(manifest.totalDocuments == expectedDocuments[0])
        #expect(manifest.shards.count == 4)
        #expect(manifest.inputs.first?.emptyDocuments == 0)
        let dataset = try TokenDataset.open(output)
        #expect(dataset.tokenCount == manifest.totalTokens)
        let samples = try PackedSamples(dataset: dataset, sequenceLength: 256)
        #expect(samples.sampleCount == (manifest.totalTokens - 1) / 256)
        let batch = try samples.batch([0, samples.sampleCount - 1])
        #expect(batch.inputs.allSatisfy { $0 >= 0 && $0 < 259 })
    }
}
