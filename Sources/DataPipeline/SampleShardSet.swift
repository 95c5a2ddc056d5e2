import Foundation
import Runtime

/// A directory of tokenized samples opened for training — SFT samples (`SFTShardSet`) or
/// preference data (`PreferenceShardSet`): the samples' lengths are read once, and each sample's
/// ids and loss mask are read back when needed, so only eight bytes per sample stay in memory
/// whatever the size of the set. Not thread-safe: one reader per instance.
public class SampleShardSet {
    public let directory: String
    public let manifest: ShardManifest
    let store: ShardSetStore
    /// Stream index of each sample's first token, plus the total at the end.
    private let starts: [Int64]

    /// Reads every shard's sample offsets from `store` (opened and checked as `TokenDataset.open`
    /// checks token shards) and checks that every sample fits `sequenceLength`.
    init(store: ShardSetStore, sequenceLength: Int) throws(DataError) {
        let directory = store.directory
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
        for index in 0..<starts.count - 1 where starts[index + 1] - starts[index] > Int64(sequenceLength) {
            throw DataError("\(directory): sample \(index) has \(starts[index + 1] - starts[index]) tokens, more than the seq_len \(sequenceLength) its manifest records")
        }
        self.directory = directory
        self.store = store
        self.manifest = store.manifest
        self.starts = starts
    }

    /// Refuses samples made with another tokenizer, or with a setting other than the run's
    /// (`difference`: the key and both values), naming the command that makes them again.
    func check(tokenizer: TokenizerIdentity, difference: (key: String, shards: String, run: String)?, command: String) throws(DataError) {
        let made = manifest.tokenizer
        guard made.hash == tokenizer.hash else {
            throw DataError("\(directory) was tokenized with tokenizer \(made.name) (\(made.hash)), but this run's is \(tokenizer.name) (\(tokenizer.hash)); tokenize the samples again with this run's config (\(command))")
        }
        if let (key, shards, runs) = difference {
            throw DataError("\(directory) was tokenized with \(key) \(shards), but this run has \(runs); tokenize the samples again with this run's config (\(command)), or set \(key) as they were")
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
