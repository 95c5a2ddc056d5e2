import Runtime

/// What a dedup run did: counts (the same on every run over the same inputs) and throughput.
public struct DedupStats: Sendable, Equatable {
    public var documents = 0
    /// UTF-8 bytes of the documents' text.
    public var textBytes = 0
    /// Input lines or files skipped under `--on-error skip`.
    public var skipped = 0
    public var kept = 0
    /// Removed documents whose normalized text equals an earlier document's.
    public var exactDuplicates = 0
    /// Other removed documents (found by MinHash-LSH).
    public var nearDuplicates = 0
    /// Duplicate clusters (connected components with two or more documents).
    public var clusters = 0
    /// Candidate pairs found by sharing a bucket (before verification).
    public var candidatePairs = 0
    /// Candidate pairs dropped by `--verify-jaccard`.
    public var rejectedPairs = 0
    /// Rounds of label propagation.
    public var rounds = 0
    /// Sorted runs spilled to disk (all ranks).
    public var spilledRuns = 0
    public var seconds = 0.0
    /// The largest peak resident set size of any rank.
    public var peakResidentMegabytes = 0.0
    public var ranks = 1

    public var removed: Int { exactDuplicates + nearDuplicates }

    /// `stats.json`: the counts, then throughput under "timing" (which differs between runs).
    public var json: String {
        var counts = JSONLine()
        counts.add("documents", documents)
        counts.add("text_bytes", textBytes)
        counts.add("skipped", skipped)
        counts.add("kept", kept)
        counts.add("removed", removed)
        counts.add("exact_duplicates", exactDuplicates)
        counts.add("near_duplicates", nearDuplicates)
        counts.add("clusters", clusters)
        counts.add("candidate_pairs", candidatePairs)
        counts.add("rejected_pairs", rejectedPairs)
        let seconds = max(self.seconds, 1e-9)
        var timing = JSONLine()
        timing.add("seconds", self.seconds)
        timing.add("ranks", ranks)
        timing.add("docs_per_s", Double(documents) / seconds)
        timing.add("docs_per_s_per_rank", Double(documents) / seconds / Double(ranks))
        timing.add("mb_per_s", Double(textBytes) / 1e6 / seconds)
        timing.add("rounds", rounds)
        timing.add("spilled_runs", spilledRuns)
        timing.add("peak_rss_mb", peakResidentMegabytes)
        return "{\"counts\":\(counts.text),\"timing\":\(timing.text)}\n"
    }

    /// A readable table for the console.
    public var table: String {
        let seconds = max(self.seconds, 1e-9)
        let rows: [(String, String)] = [
            ("documents in", "\(documents)"),
            ("text MB", String(format: "%.2f", Double(textBytes) / 1e6)),
            ("skipped inputs", "\(skipped)"),
            ("kept", "\(kept)"),
            ("exact duplicates", "\(exactDuplicates)"),
            ("near duplicates", "\(nearDuplicates)"),
            ("clusters", "\(clusters)"),
            ("candidate pairs", "\(candidatePairs)"),
            ("rejected by Jaccard", "\(rejectedPairs)"),
            ("seconds", String(format: "%.2f", self.seconds)),
            ("docs/s (\(ranks) rank\(ranks == 1 ? "" : "s"))", String(format: "%.0f", Double(documents) / seconds)),
            ("MB/s", String(format: "%.2f", Double(textBytes) / 1e6 / seconds)),
            ("peak RSS MB (largest rank)", String(format: "%.0f", peakResidentMegabytes)),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
