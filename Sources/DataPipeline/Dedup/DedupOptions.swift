/// The settings of `meshlm data dedup` (docs/data.md, "Deduplication").
public struct DedupOptions: Sendable {
    /// Remove documents whose normalized text equals an earlier one's.
    public var exact = true
    /// Remove near-duplicates found by MinHash-LSH.
    public var minhash = true
    /// Words per shingle.
    public var ngramSize = 5
    public var bands = 14
    public var rows = 8
    /// Jaccard similarity a candidate pair must reach under `verifyJaccard`.
    public var threshold = 0.8
    /// Compute the exact shingle Jaccard similarity of every candidate pair and drop pairs
    /// below `threshold` (without it, sharing one band makes a pair).
    public var verifyJaccard = false
    /// Memory for band keys per rank before they spill to disk in sorted runs.
    public var memoryMegabytes = 1024.0
    public var reader = RecordReaderOptions()

    public init() {}

    /// Checks ranges; messages name the option.
    public func validate() throws(DataError) {
        guard exact || minhash else { throw DataError("nothing to do: give --exact, --minhash or both (the default)") }
        guard (1...64).contains(ngramSize) else { throw DataError("--ngram must be 1 to 64, got \(ngramSize)") }
        guard (1...256).contains(bands) else { throw DataError("--bands must be 1 to 256, got \(bands)") }
        guard (1...64).contains(rows) else { throw DataError("--rows must be 1 to 64, got \(rows)") }
        guard threshold > 0 && threshold <= 1 else { throw DataError("--threshold must be in (0, 1], got \(threshold)") }
        guard memoryMegabytes >= 0.01 else { throw DataError("--memory-mb must be at least 0.01, got \(memoryMegabytes)") }
    }

    /// Text that changes when any setting that affects the output changes (the resume check).
    var fingerprint: String {
        "dedup exact=\(exact) minhash=\(minhash) ngram=\(ngramSize) bands=\(bands) rows=\(rows) "
            + "threshold=\(threshold) verify=\(verifyJaccard) text_field=\(reader.textField) "
            + "id_field=\(reader.idField) on_error=\(reader.onError.rawValue)"
    }
}
