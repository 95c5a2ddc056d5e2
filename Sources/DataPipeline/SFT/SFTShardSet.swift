import Foundation
import Runtime

/// A directory of tokenized SFT samples (`meshlm data sft-tokenize`) opened for training
/// (`SampleShardSet`: lengths in memory, samples read back per batch).
public final class SFTShardSet: SampleShardSet {
    /// How the samples were made (the manifest's `sft` section).
    public let settings: SFTShardSettings

    /// Opens `directory` and checks it as `TokenDataset.open` checks token shards (with
    /// `checksums`, every file's SHA-256 too), then reads every shard's sample offsets.
    public init(directory: String, checksums: Bool = false) throws(DataError) {
        let store = try ShardSetStore(directory: directory, checksums: checksums)
        guard let settings = store.manifest.sft else {
            throw DataError("\(directory): holds \(store.manifest.contents), not tokenized SFT samples; make those with meshlm data sft-tokenize, or give the JSONL samples")
        }
        self.settings = settings
        try super.init(store: store, sequenceLength: settings.sequenceLength)
    }

    /// Refuses samples made with another tokenizer, or with settings other than a run's `run`
    /// (counts aside), naming the key and both values.
    public func check(tokenizer: TokenizerIdentity, run: SFTShardSettings) throws(DataError) {
        try check(tokenizer: tokenizer, difference: settings.difference(from: run), command: "meshlm data sft-tokenize")
    }
}
