import DataPipeline
import Foundation
import Runtime
import Testing
import Training

/// Tokenized preference directories (`PreferenceSharding`, `meshlm data pref-tokenize`) against
/// the in-memory path of `meshlm dpo` / `reward` / `kto`: the same pairs and samples, margins,
/// labels, fit counts and packed rows; refusals of other settings and of bad lines. The
/// multi-rank byte identity and the training losses are in MeshLMTests (PrefTokenizeCommandTests).
@Suite struct PreferenceShardTests {
    let tokenizer = ByteTokenizer()

    func scratch(_ name: String = #function) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("meshlm-pref-shards-\(getpid())")
            .appendingPathComponent("\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(6))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func tokenization() throws -> PreferenceTokenization {
        PreferenceTokenization(tokenizer: tokenizer, renderer: try ChatTemplateRenderer(template: SFTTokenization.chatML))
    }

    /// Pairs of both explicit-prompt kinds, some with a margin, some identical, of lengths from a
    /// few tokens to past a row.
    func pairRecords(count: Int) -> String {
        (0..<count).map { index in
            let answer = String(repeating: "answer \(index) ", count: 1 + index % 7)
            let other = index % 11 == 5 ? answer : String(repeating: "other \(index) ", count: 1 + index % 5)
            let margin = index % 3 == 0 ? #", "margin": \#(Double(index) / 4)"# : ""
            if index % 2 == 0 {
                return #"{"prompt": "Count to \#(index):", "chosen": " \#(answer)", "rejected": " \#(other)"\#(margin)}"#
            }
            let prompt = String(repeating: "Q\(index)? ", count: 1 + index % 6)
            return #"{"prompt": [{"role": "user", "content": "\#(prompt)"}], "chosen": [{"role": "assistant", "content": "\#(answer)"}], "rejected": [{"role": "assistant", "content": "\#(other)"}]\#(margin)}"#
        }.joined(separator: "\n") + "\n"
    }

    func unpairedRecords(count: Int) -> String {
        (0..<count).map { index in
            let answer = String(repeating: "answer \(index) ", count: 1 + index % 9)
            return #"{"prompt": [{"role": "user", "content": "Q\#(index)?"}], "completion": [{"role": "assistant", "content": "\#(answer)"}], "label": \#(index % 3 != 0)}"#
        }.joined(separator: "\n") + "\n"
    }

    func settings(_ kind: PreferenceShardSettings.Kind, _ sequenceLength: Int, _ truncation: SFTTruncation) -> PreferenceShardSettings {
        PreferenceShardSettings(kind: kind, format: kind == .pairs ? .auto : nil, tags: kind == .pairs ? ShareGPTTags() : nil,
                                template: "chatml", templateHash: SFTShardSettings.templateHash(template: SFTTokenization.chatML, specialTokens: [:]),
                                truncation: truncation, sequenceLength: sequenceLength)
    }

    /// Writes `text` as `name` in `directory` and tokenizes it into `directory/shards`.
    func shard(_ text: String, in directory: String, _ settings: PreferenceShardSettings, name: String = "data.jsonl") throws -> (input: String, output: String, manifest: ShardManifest?) {
        let input = directory + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: input))
        let output = directory + "/shards"
        let manifest = try PreferenceSharding.run(files: [input], output: output, tokenization: tokenization(), settings: settings,
                                                  options: .init(writer: .init(shardTokens: 700, chunkTokens: 256), batchSamples: 7), world: nil)
        return (input, output, manifest)
    }

    func expectSameRows(_ a: some PackedRowSource, _ b: some PackedRowSource, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(a.rowCount == b.rowCount && a.rowCount > 5, sourceLocation: sourceLocation)
        let differing = try (0..<min(a.rowCount, b.rowCount)).filter { index in
            let (x, y) = (try a.packedRow(index), try b.packedRow(index))
            return x.tokens != y.tokens || x.targets != y.targets || x.positions != y.positions || x.sequences != y.sequences
        }
        #expect(differing.isEmpty, "rows \(differing.prefix(5)) differ", sourceLocation: sourceLocation)
    }

    @Test(arguments: [SFTTruncation.drop, .keepStart, .keepEnd])
    func pairShardsHoldTheInMemoryPairsAndPackTheSameRows(truncation: SFTTruncation) throws {
        let directory = scratch()
        let made = settings(.pairs, 160, truncation)
        let (input, output, written) = try shard(pairRecords(count: 67), in: directory, made)
        let reader = try PreferenceRecordReader(path: input)
        let memory = PreferencePackedRows(try reader.readAll().map { try tokenization().tokenize($0) }, sequenceLength: 160,
                                          truncation: truncation, paddingId: tokenizer.eosId)
        let shards = try PreferenceShardSet(directory: output, kind: .pairs, checksums: true)
        #expect(shards.manifest == written && shards.manifest.format == "meshlm-preference-shards")
        #expect(shards.manifest.shards.count > 3, "\(shards.manifest.shards.count) shards: the test wants several")
        let pairs = try shards.pairs()
        #expect(pairs.count == memory.pairs.count && pairs.count > 20)
        let differing = zip(pairs, memory.pairs).enumerated().filter { _, both in
            both.0.chosen != both.1.chosen || both.0.rejected != both.1.rejected || both.0.margin != both.1.margin
        }.map(\.offset)
        #expect(differing.isEmpty, "pairs \(differing.prefix(5)) differ from the in-memory ones")
        #expect(pairs.contains { $0.margin == nil } && pairs.contains { ($0.margin ?? 0) > 0 })
        let recorded = shards.settings
        print("preference shards (\(truncation.rawValue)): \(pairs.count) pairs in \(shards.manifest.shards.count) shards; \(recorded.fitCounts.summary(noun: "pairs", sequenceLength: 160)); \(recorded.identicalSummary ?? "")")
        #expect(recorded.fitCounts == memory.fitCounts)
        #expect(truncation == .drop ? recorded.tooLong > 0 && recorded.truncated == 0 : recorded.truncated > 0)
        #expect(recorded.identicalSummary == reader.identicalSummary && recorded.identicalPairs == 6)
        #expect(recorded.difference(from: made) == nil)
        #expect(shards.manifest.inputs == [ShardManifest.Input(path: input, documents: 61, emptyDocuments: 0)])

        let packed = PreferencePackedRows(fitted: pairs, fitCounts: recorded.fitCounts, sequenceLength: 160, paddingId: tokenizer.eosId)
        #expect(packed.rows == memory.rows)
        try expectSameRows(packed, memory)
        // The reference cache is keyed by the pairs' tokens and the rows: one cache serves both.
        let identity = Data("reference".utf8)
        #expect(PreferenceReference(directory: directory, name: "train", rows: packed, identity: identity).key
                == PreferenceReference(directory: directory, name: "train", rows: memory, identity: identity).key)
    }

    @Test(arguments: [SFTTruncation.drop, .keepEnd])
    func unpairedShardsHoldTheInMemorySamples(truncation: SFTTruncation) throws {
        let directory = scratch()
        let (input, output, _) = try shard(unpairedRecords(count: 53), in: directory, settings(.unpaired, 120, truncation))
        var counts = PreferenceFitCounts()
        let memory = try UnpairedRecordReader(path: input).readAll().compactMap {
            counts.count(try tokenization().tokenize($0).fitted(to: 120, truncation: truncation))
        }
        let shards = try PreferenceShardSet(directory: output, kind: .unpaired, checksums: true)
        let samples = try shards.unpairedSamples()
        #expect(samples.map(\.sample) == memory.map(\.sample) && samples.map(\.desirable) == memory.map(\.desirable))
        #expect(samples.count > 20 && samples.contains { !$0.desirable } && shards.settings.fitCounts == counts)
        #expect(truncation == .drop ? counts.tooLong > 0 : counts.truncated > 0)
        try expectSameRows(UnpairedPackedRows(samples, sequenceLength: 120, paddingId: tokenizer.eosId),
                           UnpairedPackedRows(memory, sequenceLength: 120, paddingId: tokenizer.eosId))
    }

    @Test func otherSettingsAndOtherKindsAreRefusedNamingBothSides() throws {
        let directory = scratch()
        let (_, output, _) = try shard(pairRecords(count: 30), in: directory, settings(.pairs, 160, .keepStart))
        let made = try PreferenceShardSet(directory: output, kind: .pairs)
        try made.check(tokenizer: tokenizer.identity, run: settings(.pairs, 160, .keepStart))
        expectError("\(output) was tokenized with preference.truncation keep_start, but this run has drop; tokenize the samples again with this run's config (meshlm data pref-tokenize), or set preference.truncation as they were") {
            try made.check(tokenizer: tokenizer.identity, run: settings(.pairs, 160, .drop))
        }
        expectError("\(output) was tokenized with train.seq_len 160, but this run has 256; tokenize the samples again with this run's config (meshlm data pref-tokenize), or set train.seq_len as they were") {
            try made.check(tokenizer: tokenizer.identity, run: settings(.pairs, 256, .keepStart))
        }
        var other = settings(.pairs, 160, .keepStart)
        other.format = .alpaca
        expectError("\(output) was tokenized with preference.format auto, but this run has alpaca; tokenize the samples again with this run's config (meshlm data pref-tokenize), or set preference.format as they were") {
            try made.check(tokenizer: tokenizer.identity, run: other)
        }
        other = settings(.pairs, 160, .keepStart)
        other.templateHash = "sha256:abc"
        other.template = "mine.jinja"
        expectError("\(output) was tokenized with preference.template chatml (\(made.settings.templateHash)), but this run has mine.jinja (sha256:abc); tokenize the samples again with this run's config (meshlm data pref-tokenize), or set preference.template as they were") {
            try made.check(tokenizer: tokenizer.identity, run: other)
        }
        var identity = tokenizer.identity
        identity.hash = "sha256:0123"
        identity.name = "other.json"
        expectError("\(output) was tokenized with tokenizer bytes (\(tokenizer.identity.hash)), but this run's is other.json (sha256:0123); tokenize the samples again with this run's config (meshlm data pref-tokenize)") {
            try made.check(tokenizer: identity, run: settings(.pairs, 160, .keepStart))
        }
        expectError("\(output): holds tokenized preference pairs (meshlm data pref-tokenize), not tokenized KTO samples; make those with meshlm data pref-tokenize and a kto config, or give the JSONL samples") {
            _ = try PreferenceShardSet(directory: output, kind: .unpaired)
        }
        expectError("\(output): holds tokenized preference pairs (meshlm data pref-tokenize), not tokenized SFT samples; make those with meshlm data sft-tokenize, or give the JSONL samples") {
            _ = try SFTShardSet(directory: output)
        }
        expectError("\(output): holds tokenized preference pairs (meshlm data pref-tokenize), which meshlm dpo and meshlm reward read as data.train or data.eval; a token stream comes from meshlm data tokenize") {
            _ = try TokenDataset.open(output)
        }
        // A manifest that says preference data without its preference section.
        let manifestPath = output + "/" + ShardManifest.fileName
        var edited = made.manifest
        edited.preference = nil
        try edited.encoded().write(to: URL(fileURLWithPath: manifestPath))
        expectError("\(manifestPath): format 'meshlm-preference-shards' needs a 'preference' section") {
            _ = try PreferenceShardSet(directory: output, kind: .pairs)
        }
    }

    @Test func badLinesStopWithFileAndLineAndLeaveNoDataset() throws {
        let directory = scratch()
        let good = #"{"prompt": "Q", "chosen": " yes", "rejected": " no"}"#
        for (line, message) in [(#"{"prompt": "Q", "rejected": " no"}"#, "missing field \"chosen\""),
                                (#"{"prompt": "Q", "completion": " no", "label": true}"#, "a KTO sample (prompt, completion, label), not a pair")] {
            let text = String(repeating: good + "\n", count: 10) + line + "\n"
            do {
                _ = try shard(text, in: directory, settings(.pairs, 160, .drop), name: "bad.jsonl")
                Issue.record("\(line) was accepted")
            } catch {
                #expect(describe(error).hasPrefix("\(directory)/bad.jsonl:11: ") && describe(error).contains(message), "\(describe(error))")
            }
            #expect(!FileManager.default.fileExists(atPath: directory + "/shards"), "a failed run leaves no output")
        }
        do {
            _ = try shard(pairRecords(count: 3), in: directory, settings(.unpaired, 160, .drop), name: "bad.jsonl")
            Issue.record("pairs were accepted as KTO samples")
        } catch {
            #expect(describe(error) == "\(directory)/bad.jsonl:1: a preference pair (chosen, rejected) in KTO data: KTO reads {prompt, completion, label} samples")
        }
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
