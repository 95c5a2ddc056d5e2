import DataPipeline
import Foundation
import Runtime
import Tensors
import Testing
import Training

/// Tokenized SFT sample directories (`SFTSharding`, `meshlm data sft-tokenize`) against the
/// in-memory path: the same samples, counts and packed rows; packing against a plain scan;
/// refusals of bad input. The multi-rank byte identity and the training losses are in
/// MeshLMTests (SFTCommandTests).
@Suite struct SFTShardTests {
    let tokenizer = ByteTokenizer()

    func scratch(_ name: String = #function) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-sft-shards-\(getpid())")
            .appendingPathComponent("\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(6))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Records of every format, of lengths from a few tokens to well past `seq_len`.
    func records(count: Int) -> String {
        (0..<count).map { index in
            let answer = String(repeating: "answer \(index) ", count: 1 + index % 9)
            switch index % 4 {
            case 0: return #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q\#(index)?"}, {"role": "assistant", "content": "\#(answer)"}, {"role": "user", "content": "More?"}, {"role": "assistant", "content": "No."}]}"#
            case 1: return #"{"instruction": "Say \#(index)", "input": "now", "output": "\#(answer)"}"#
            case 2: return #"{"conversations": [{"from": "human", "value": "Hi \#(index)"}, {"from": "gpt", "value": "\#(answer)"}]}"#
            default: return #"{"prompt": "Count to \#(index):", "completion": " \#(answer)"}"#
            }
        }.joined(separator: "\n") + "\n"
    }

    func settings(_ sequenceLength: Int, _ truncation: SFTTruncation, maskHistory: Bool = false) -> SFTShardSettings {
        SFTShardSettings(format: .auto, tags: ShareGPTTags(), template: "chatml",
                         templateHash: SFTShardSettings.templateHash(template: SFTTokenization.chatML, specialTokens: [:]),
                         trainOnPrompt: false, maskHistory: maskHistory, truncation: truncation, sequenceLength: sequenceLength)
    }

    func tokenization(maskHistory: Bool = false) throws -> SFTTokenization {
        SFTTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: SFTTokenization.chatML),
                        options: .init(maskHistory: maskHistory))
    }

    /// Writes `text` as `name` in `directory` and tokenizes it into `directory/shards`.
    func shard(_ text: String, in directory: String, sequenceLength: Int, truncation: SFTTruncation, maskHistory: Bool = false,
               shardTokens: Int = 1000, name: String = "samples.jsonl") throws -> (input: String, output: String, manifest: ShardManifest?) {
        let input = directory + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: input))
        let output = directory + "/shards"
        let manifest = try SFTSharding.run(inputs: .init(files: [input], format: .auto, tags: ShareGPTTags()), output: output,
                                           tokenization: tokenization(maskHistory: maskHistory),
                                           settings: settings(sequenceLength, truncation, maskHistory: maskHistory),
                                           options: .init(writer: .init(shardTokens: shardTokens, chunkTokens: 256), batchSamples: 7),
                                           world: nil)
        return (input, output, manifest)
    }

    @Test(arguments: [SFTTruncation.drop, .keepStart, .keepEnd])
    func shardsHoldTheInMemorySamplesAndPackTheSameRows(truncation: SFTTruncation) throws {
        let directory = scratch()
        let (input, output, written) = try shard(records(count: 61), in: directory, sequenceLength: 128, truncation: truncation,
                                                 maskHistory: truncation == .keepEnd)
        let reader = try SFTRecordReader(path: input)
        let memory = SFTPackedRows(try reader.readAll().map { try tokenization(maskHistory: truncation == .keepEnd).tokenize($0) },
                                   sequenceLength: 128, truncation: truncation, paddingId: tokenizer.eosId)
        let samples = try SFTShardSet(directory: output, checksums: true)
        #expect(samples.manifest == written && samples.manifest.format == "meshlm-sft-shards")
        #expect(samples.manifest.shards.count > 3, "\(samples.manifest.shards.count) shards: the test wants several")
        #expect(samples.sampleCount == memory.samples.sampleCount && samples.sampleCount > 20)
        let differing = try (0..<min(samples.sampleCount, memory.samples.sampleCount)).filter {
            try samples.sample($0) != memory.samples.sample($0)
        }
        #expect(differing.isEmpty, "samples \(differing.prefix(5)) differ from the in-memory tokenization")
        let made = try #require(samples.manifest.sft)
        print("sft shards (\(truncation.rawValue)): \(samples.sampleCount) samples in \(samples.manifest.shards.count) shards, \(made.droppedSamples) dropped, \(made.truncatedSamples) truncated")
        #expect(made.droppedSamples == memory.droppedCount && made.truncatedSamples == memory.truncatedCount)
        #expect(made.supervisedTokens == memory.supervisedCount && samples.manifest.totalTokens == memory.tokenCount)
        #expect(truncation == .drop ? made.droppedSamples > 0 && made.truncatedSamples == 0 : made.truncatedSamples > 0)
        #expect(made.difference(from: settings(128, truncation, maskHistory: truncation == .keepEnd)) == nil)
        #expect(samples.manifest.inputs == [ShardManifest.Input(path: input, documents: 61, emptyDocuments: 0)])

        let packed = SFTPackedRows(fitted: samples, sequenceLength: 128, droppedCount: made.droppedSamples, truncatedCount: made.truncatedSamples,
                                   supervisedCount: made.supervisedTokens, paddingId: tokenizer.eosId)
        #expect(packed.rows == memory.rows)
        let differingRows = try memory.rows.indices.filter { index in
            let (a, b) = (try packed.packedRow(index), try memory.packedRow(index))
            return a.tokens != b.tokens || a.targets != b.targets || a.positions != b.positions
        }
        #expect(differingRows.isEmpty, "rows \(differingRows.prefix(5)) differ")
    }

    func naiveBestFitDecreasing(lengths: [Int], sequenceLength: Int) -> [[Int]] {
        let order = lengths.indices.sorted { (lengths[$0], $1) > (lengths[$1], $0) }
        var rows: [[Int]] = [], free: [Int] = []
        for index in order {
            var best: Int?
            for row in free.indices where free[row] >= lengths[index] && free[row] < (best.map { free[$0] } ?? .max) { best = row }
            if let best {
                rows[best].append(index)
                free[best] -= lengths[index]
            } else {
                rows.append([index])
                free.append(sequenceLength - lengths[index])
            }
        }
        return rows
    }

    @Test func bestFitDecreasingPlacesAsTheScanOverEveryRow() {
        var generator = SplitMix64(seed: 11)
        for (count, sequenceLength) in [(1, 8), (40, 16), (700, 96), (3000, 257)] {
            let lengths = (0..<count).map { _ in 1 + Int(generator.next() % UInt64(sequenceLength)) }
            let rows = SFTPackedRows.bestFitDecreasing(lengths: lengths, sequenceLength: sequenceLength)
            #expect(rows == naiveBestFitDecreasing(lengths: lengths, sequenceLength: sequenceLength), "\(count) samples, rows of \(sequenceLength)")
            #expect(rows.allSatisfy { $0.reduce(0) { $0 + lengths[$1] } <= sequenceLength })
        }
    }

    @Test func badInputIsRefusedAndLeavesNoDataset() throws {
        let directory = scratch()
        let bad = records(count: 10) + #"{"messages": [{"role": "user", "content": "Q"}]}"# + "\n"
        expectError("\(directory)/bad.jsonl:11: the last message is from the user; a training sample ends with the assistant's answer") {
            _ = try shard(bad, in: directory, sequenceLength: 64, truncation: .drop, name: "bad.jsonl")
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/shards"), "a failed run leaves no output directory")

        let (_, output, _) = try shard(records(count: 5), in: directory, sequenceLength: 64, truncation: .drop)
        expectError("\(output): output directory exists and is not empty (choose another, or pass --overwrite to replace its shards)") {
            _ = try shard(records(count: 5), in: directory, sequenceLength: 64, truncation: .drop)
        }
        expectError("\(output): holds tokenized SFT samples (meshlm data sft-tokenize), which meshlm sft reads as data.train or data.eval; a token stream comes from meshlm data tokenize") {
            _ = try TokenDataset.open(output)
        }
        let tokens = directory + "/tokens"
        let writer = try TokenShardWriter(directory: tokens, tokenizer: tokenizer.identity)
        try writer.append(document: [1, 2, 3])
        try writer.finish()
        expectError("\(tokens): holds token shards (meshlm data tokenize), not tokenized SFT samples; make those with meshlm data sft-tokenize, or give the JSONL samples") {
            _ = try SFTShardSet(directory: tokens)
        }
        // Settings or a tokenizer other than the run's are refused, naming the key and both values.
        let made = try SFTShardSet(directory: output)
        expectError("\(output) was tokenized with sft.mask_history false, but this run has true; tokenize the samples again with this run's config (meshlm data sft-tokenize), or set sft.mask_history as they were") {
            try made.check(tokenizer: tokenizer.identity, run: settings(64, .drop, maskHistory: true))
        }
        expectError("\(output) was tokenized with train.seq_len 64, but this run has 128; tokenize the samples again with this run's config (meshlm data sft-tokenize), or set train.seq_len as they were") {
            try made.check(tokenizer: tokenizer.identity, run: settings(128, .drop))
        }
        var other = settings(64, .drop)
        other.templateHash = SFTShardSettings.templateHash(template: SFTTokenization.chatML, specialTokens: ["bos_token": "<s>"])
        expectError("\(output) was tokenized with sft.template chatml (\(made.settings.templateHash)), but this run has chatml (\(other.templateHash)); tokenize the samples again with this run's config (meshlm data sft-tokenize), or set sft.template as they were") {
            try made.check(tokenizer: tokenizer.identity, run: other)
        }
        var identity = tokenizer.identity
        identity.hash = "sha256:0123"
        identity.name = "other.json"
        expectError("\(output) was tokenized with tokenizer bytes (\(tokenizer.identity.hash)), but this run's is other.json (sha256:0123); tokenize the samples again with this run's config (meshlm data sft-tokenize)") {
            try made.check(tokenizer: identity, run: settings(64, .drop))
        }
        try made.check(tokenizer: tokenizer.identity, run: settings(64, .drop))

        // A manifest that says SFT samples without its sft section.
        let manifestPath = output + "/" + ShardManifest.fileName
        let original = try String(contentsOfFile: manifestPath, encoding: .utf8)
        var edited = made.manifest
        edited.sft = nil
        try edited.encoded().write(to: URL(fileURLWithPath: manifestPath))
        expectError("\(manifestPath): format 'meshlm-sft-shards' needs an 'sft' section") { _ = try SFTShardSet(directory: output) }
        // Samples longer than the seq_len the manifest records (a hand-edited manifest).
        edited = made.manifest
        edited.sft?.sequenceLength = 10
        try edited.encoded().write(to: URL(fileURLWithPath: manifestPath))
        let longest = (0..<made.sampleCount).first { made.length(of: $0) > 10 }
        expectError("\(output): sample \(longest ?? -1) has \(longest.map { made.length(of: $0) } ?? -1) tokens, more than the seq_len 10 its manifest records") {
            _ = try SFTShardSet(directory: output)
        }
        try original.write(toFile: manifestPath, atomically: true, encoding: .utf8)
        #expect(try SFTShardSet(directory: output, checksums: true).sampleCount == made.sampleCount)
    }

    func expectError(_ message: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected the error: \(message)", sourceLocation: sourceLocation)
        } catch {
            #expect(describe(error) == message, sourceLocation: sourceLocation)
        }
    }
}
