import Foundation
import Runtime

/// A directory of tokenized preference data (`meshlm data pref-tokenize`) opened for a run:
/// pairs (samples 2p chosen, 2p + 1 rejected) or KTO samples, each sample with its value (the
/// pair's margin, or the label), read as `SampleShardSet` reads samples.
public final class PreferenceShardSet: SampleShardSet {
    /// What the samples are and how they were made (the manifest's `preference` section).
    public let settings: PreferenceShardSettings
    /// Each sample's value (`PreferenceShardSettings.Kind`), read once.
    public let values: [Double]

    /// Opens `directory` as `SFTShardSet` does and reads the samples' values; refuses another
    /// kind of directory, or preference data of another `kind`, saying which command makes what.
    public init(directory: String, kind: PreferenceShardSettings.Kind, checksums: Bool = false) throws(DataError) {
        let store = try ShardSetStore(directory: directory, checksums: checksums)
        guard let settings = store.manifest.preference, settings.kind == kind else {
            throw DataError("\(directory): holds \(store.manifest.contents), not tokenized \(kind.noun); make those with meshlm data pref-tokenize and a \(kind == .pairs ? "dpo or reward" : "kto") config, or give the JSONL \(kind == .pairs ? "pairs" : "samples")")
        }
        var values: [Double] = []
        for index in store.manifest.shards.indices {
            values += try store.whole(Double.self, dataset: ShardManifest.sampleValuesDataset, ofShard: index)
        }
        let samplesPerRecord = kind == .pairs ? 2 : 1
        guard store.manifest.totalDocuments == samplesPerRecord * settings.kept else {
            throw DataError("\(directory): holds \(store.manifest.totalDocuments) samples, but its manifest counts \(settings.kept) \(kind.noun) kept (\(samplesPerRecord) sample\(samplesPerRecord == 1 ? "" : "s") each)")
        }
        if kind == .unpaired, let stray = values.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw DataError("\(directory): sample \(stray) has label \(values[stray]) (\(ShardManifest.sampleValuesDataset) holds 1 desirable, 0 undesirable)")
        }
        self.settings = settings
        self.values = values
        try super.init(store: store, sequenceLength: settings.sequenceLength)
    }

    /// Refuses data made with another tokenizer, or with settings other than a run's `run`
    /// (counts aside), naming the key and both values.
    public func check(tokenizer: TokenizerIdentity, run: PreferenceShardSettings) throws(DataError) {
        try check(tokenizer: tokenizer, difference: settings.difference(from: run), command: "meshlm data pref-tokenize")
    }
}
