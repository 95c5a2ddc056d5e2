@testable import DataPipeline
import Foundation
import Runtime
import Testing

/// The reference word splitter: Unicode properties per scalar via the standard library, words
/// built as strings and hashed afterwards (FNV-1a over the normalized UTF-8, then the mixer).
private func referenceWordHashes(_ text: String) -> [UInt64] {
    var words = [String]()
    var current = ""
    for scalar in text.unicodeScalars {
        let properties = scalar.properties
        let category = properties.generalCategory
        let isWord = properties.isAlphabetic || [.nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .letterNumber, .otherNumber].contains(category)
        if isWord {
            current += category == .decimalNumber ? "0" : properties.lowercaseMapping
        } else if !current.isEmpty {
            words.append(current)
            current = ""
        }
    }
    if !current.isEmpty { words.append(current) }
    return words.map { word in
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in word.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return TextHashing.mix(hash)
    }
}

@Suite struct DedupHashingTests {
    @Test func wordScannerMatchesTheReferenceSplitter() throws {
        var hasher = ShingleHasher(ngramSize: 5)
        var samples = ["Hello, World! It's 2026-11-24; x² ≠ y₃.", "Ünïcödé ΑΒΓ déjà-vu — İstanbul straße ǅ", "नमस्ते दुनिया 日本語のテキスト ١٢٣ abc",
                       "", "   ", "...", "tail-word", "😀 emoji 👍🏽 between"]
        let compressed = try [UInt8](Data(contentsOf: URL(fileURLWithPath: join(repositoryRoot, "data/corpus/eval.jsonl.zst"))))
        for line in try Zstd.decompress(compressed).split(separator: 0x0A).prefix(20) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            samples.append(try #require(object["text"] as? String))
        }
        for sample in samples {
            var text = sample
            #expect(hasher.words(&text) == referenceWordHashes(sample), "\(sample.prefix(60))")
        }
        var punctuated = "The Quick, brown FOX", plain = "the quick brown fox"
        #expect(hasher.words(&punctuated) == hasher.words(&plain))
        var chapter12 = "Chapter 12", chapter13 = "chapter 13"
        #expect(hasher.words(&chapter12) == hasher.words(&chapter13))
    }

    @Test func shinglesAreWordNgrams() {
        var hasher = ShingleHasher(ngramSize: 3)
        var text = "a b c d a b c"
        let shingles = hasher.shingleSet(&text)
        #expect(shingles.count == 4)  // abc, bcd, cda, dab (abc twice)
        var short = "just two"
        #expect(hasher.shingleSet(&short).count == 1)
        var none = " ,.; "
        #expect(hasher.shingleSet(&none).isEmpty)
    }

    /// The fraction of equal signature entries estimates Jaccard similarity (Broder): checked on
    /// sets of known overlap, with 256 functions (standard error ≤ 0.032).
    @Test func minHashEstimatesJaccard() {
        let hasher = MinHasher(bands: 32, rows: 8)
        let base = (0..<2000).map { TextHashing.mix(UInt64($0) &+ 77) }
        for overlap in [0, 500, 1000, 1500, 1900, 2000] {
            let first = Array(base[0..<2000])
            let second = Array(base[(2000 - overlap)..<2000]) + (0..<(2000 - overlap)).map { TextHashing.mix(UInt64($0) &+ 1_000_000) }
            let truth = Double(overlap) / Double(4000 - overlap)
            let signatureA = hasher.signature(first)
            let signatureB = hasher.signature(second)
            let estimate = Double(zip(signatureA, signatureB).filter { $0 == $1 }.count) / Double(signatureA.count)
            #expect(abs(estimate - truth) < 0.1, "overlap \(overlap): estimate \(estimate), truth \(truth)")
            let sharedBands = zip(hasher.bandKeys(signatureA), hasher.bandKeys(signatureB)).filter { $0 == $1 }.count
            if overlap == 2000 { #expect(sharedBands == 32) }
            if overlap == 0 { #expect(sharedBands == 0) }
        }
        let empty = hasher.signature([])
        #expect(empty.allSatisfy { $0 == .max })
    }

    @Test func exactHashIgnoresOnlyWhitespaceRuns() {
        var normalizer = ExactNormalizer()
        func hash(_ text: String) -> (UInt64, UInt64) {
            var copy = text
            let value = normalizer.hash(&copy)
            return (value.high, value.low)
        }
        #expect(hash("a b\tc") == hash("  a \n b\r\n\tc \n"))
        #expect(hash("a b c") != hash("a b C"))
        #expect(hash("a b c") != hash("abc"))
        #expect(hash("") == hash(" \n "))
        var seen = Set<String>()
        for length in 0..<200 {
            let value = hash(String(repeating: "x", count: length) + "y")
            seen.insert("\(value.0)-\(value.1)")
        }
        #expect(seen.count == 200)
    }

    @Test func jaccardOfSortedSetsMatchesSetAlgebra() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let first = Set((0..<Int.random(in: 0...60, using: &random)).map { _ in UInt64.random(in: 0..<100, using: &random) })
            let second = Set((0..<Int.random(in: 0...60, using: &random)).map { _ in UInt64.random(in: 0..<100, using: &random) })
            let union = first.union(second).count
            let expected = union == 0 ? 0 : Double(first.intersection(second).count) / Double(union)
            #expect(JaccardVerifier.jaccard(first.sorted(), second.sorted()) == expected)
        }
    }

    /// Spilling sorted runs and merging them yields the same buckets as sorting in memory, and
    /// both match grouping by a dictionary.
    @Test func bucketSorterSpillsAndMergesToTheSameBuckets() throws {
        var state: UInt64 = 42
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            return TextHashing.mix(state)
        }
        let entries = (0..<20_000).map { index in BucketEntry(key: next() % 3000, tag: next() % 3, ordinal: UInt64(index)) }
        var expected = [String: [UInt64]]()
        for entry in entries { expected["\(entry.key)/\(entry.tag)", default: []].append(entry.ordinal) }
        let shared = expected.filter { $0.value.count > 1 }
        for budget in [1 << 30, 24 * 1500] {
            let sorter = BucketSorter(budgetBytes: budget, spillDirectory: scratchDirectory())
            for entry in entries { try sorter.append(entry) }
            var buckets = [[UInt64]]()
            var tags = [UInt64]()
            try sorter.forEachSharedBucket { tag, members in
                buckets.append(members)
                tags.append(tag)
            }
            #expect(buckets.count == shared.count)
            #expect(Set(buckets.map { $0.map(String.init).joined(separator: ",") })
                    == Set(shared.values.map { $0.sorted().map(String.init).joined(separator: ",") }))
            #expect(buckets.allSatisfy { $0 == $0.sorted() })
            #expect(budget > 1 << 20 ? sorter.spilledRuns == 0 : sorter.spilledRuns >= 13)
        }
    }
}

