import Foundation
import Runtime

/// A directory of tokenized SFT samples (`meshlm data sft-tokenize`) opened for training: the
/// samples' lengths are read once, and each sample's ids and loss mask are read back when a
/// batch needs them, so only eight bytes per sample stay in memory whatever the size of the set.
/// Not thread-safe: one reader per instance.
public final class SFTShardSet {
    public let directory: String
    public let manifest: ShardManifest
    /// How the samples were made (the manifest's `sft` section).
    public let settings: SFTShardSettings
    private let store: ShardSetStore
    /// Stream index of each sample's first token, plus the total at the end.
    private let starts: [Int64]

    /// Opens `directory` and checks it as `TokenDataset.open` checks token shards (with
    /// `checksums`, every file's SHA-256 too), then reads every shard's sample offsets.
    public init(directory: String, checksums: Bool = false) throws(DataError) {
        let store = try ShardSetStore(directory: directory, checksums: checksums)
        guard let settings = store.manifest.sft else {
            throw DataError("\(directory): holds token shards (meshlm data tokenize), not tokenized SFT samples; make those with meshlm data sft-tokenize, or give the JSONL samples")
        }
        var starts: [Int64] = []
        starts.reserveCapacity(store.manifest.totalDocuments + 1)
        var shardStart: Int64 = 0
        for (index, shard) in store.manifest.shards.enumerated() {
            let offsets = try store.offsets(ofShard: index)
            var previous: Int64 = -1
            for offset in offsets {
                // Samples are contiguous: the first starts at 0, each after the one before, inside the shard.
                guard offset > previous, offset < Int64(shard.tokens), previous >= 0 || offset == 0 else {
                    throw DataError("\(ShardSetStore.path(directory, shard.file)): \(ShardManifest.sampleOffsetsDataset) are not increasing from 0 within its \(shard.tokens) tokens (offset \(offset) after \(previous))")
                }
                starts.append(shardStart + offset)
                previous = offset
            }
            shardStart += Int64(shard.tokens)
        }
        starts.append(shardStart)
        // Packing relies on every sample fitting a row; a file that breaks it is refused, not trapped on.
        for index in 0..<starts.count - 1 where starts[index + 1] - starts[index] > Int64(settings.sequenceLength) {
            throw DataError("\(directory): sample \(index) has \(starts[index + 1] - starts[index]) tokens, more than the seq_len \(settings.sequenceLength) its manifest records")
        }
        self.directory = directory
        self.store = store
        self.manifest = store.manifest
        self.settings = settings
        self.starts = starts
    }

    /// Refuses samples made with another tokenizer, or with settings other than a run's `run`
    /// (counts aside), naming the key and both values.
    public func check(tokenizer: TokenizerIdentity, run: SFTShardSettings) throws(DataError) {
        let made = manifest.tokenizer
        guard made.hash == tokenizer.hash else {
            throw DataError("\(directory) was tokenized with tokenizer \(made.name) (\(made.hash)), but this run's is \(tokenizer.name) (\(tokenizer.hash)); tokenize the samples again with this run's config (meshlm data sft-tokenize)")
        }
        if let (key, shards, runs) = settings.difference(from: run) {
            throw DataError("\(directory) was tokenized with \(key) \(shards), but this run has \(runs); tokenize the samples again with this run's config (meshlm data sft-tokenize), or set \(key) as they were")
        }
    }

    public var sampleCount: Int { starts.count - 1 }

    /// The token count of sample `index`.
    public func length(of index: Int) -> Int { Int(starts[index + 1] - starts[index]) }

    /// Sample `index`'s ids and loss mask, read from its shard.
    public func sample(_ index: Int) throws(DataError) -> TokenizedSample {
        let range = Int(starts[index])..<Int(starts[index + 1])
        var ids = [Int32](repeating: 0, count: range.count)
        var mask = [UInt8](repeating: 0, count: range.count)
        try ids.withUnsafeMutableBufferPointer { (buffer) throws(DataError) in
            try store.read(range, dataset: ShardManifest.tokensDataset, into: buffer.baseAddress!)
        }
        try mask.withUnsafeMutableBufferPointer { (buffer) throws(DataError) in
            try store.read(range, dataset: ShardManifest.lossMaskDataset, into: buffer.baseAddress!)
        }
        return TokenizedSample(ids: ids, supervised: mask.map { $0 != 0 })
    }
}
