import Foundation

/// A training or eval token source (DESIGN §4) presented as one stream of token ids: a token
/// shard directory (via its `manifest.json`), a headerless `.bin`, or a `.npy`.
///
/// Memory rule: a dataset of at most `Cache.fullyCachedTokens` tokens (16 Mi by default, 64 MiB as
/// Int32) is read whole when opened; a larger one is read in blocks of `Cache.blockTokens`
/// (the shards' HDF5 chunk size by default), keeping the `Cache.blocks` most recently used, so
/// memory stays bounded whatever the size of the data. Not thread-safe: one reader per instance.
public final class TokenDataset {
    /// How much of the stream stays in memory.
    public struct Cache: Sendable {
        /// Datasets up to this many tokens are loaded whole.
        public var fullyCachedTokens: Int
        /// Tokens per cached block of a larger dataset (nil: the shards' chunk size, or 65,536).
        public var blockTokens: Int?
        /// Blocks kept (least recently used dropped first).
        public var blocks: Int

        public init(fullyCachedTokens: Int = 1 << 24, blockTokens: Int? = nil, blocks: Int = 8) {
            self.fullyCachedTokens = fullyCachedTokens
            self.blockTokens = blockTokens
            self.blocks = blocks
        }
    }

    /// What opening checks of a shard directory.
    public enum Verification: Sendable {
        /// Every shard present with its recorded size, dataset lengths and document counts.
        case structure
        /// That, and every file's SHA-256 against the manifest (reads all of the data once).
        case checksums
    }

    public let path: String
    public let tokenCount: Int
    /// The manifest of a shard directory; nil for `.bin` and `.npy`.
    public let manifest: ShardManifest?
    /// The EOS id: the manifest's, or the one given for `.bin`/`.npy` (nil if none was).
    public let eosId: Int32?
    /// The vocabulary the ids come from, when known (shard directories).
    public var vocabSize: Int? { manifest?.vocabSize }

    private let store: any TokenStore
    private let blockTokens: Int
    private let maximumBlocks: Int
    private var blocks: [(index: Int, tokens: [Int32])] = []

    /// Opens `path`: a directory with `manifest.json`, a `.npy`, or a headerless `.bin` of
    /// `binType` ids. `eosId` names the EOS of a `.bin`/`.npy` (shard directories
    /// record theirs; a different one given here is an error).
    public static func open(_ path: String, binType: RawTokenType = .uint16, eosId: Int32? = nil,
                            verify: Verification = .structure, cache: Cache = Cache()) throws(DataError) -> TokenDataset {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError("\(path): no such file or directory")
        }
        if isDirectory.boolValue {
            let store = try ShardSetStore(directory: path, checksums: verify == .checksums)
            guard !store.manifest.holdsSamples else {
                let reader = store.manifest.sft != nil ? "meshlm sft reads" : store.manifest.preference?.kind == .unpaired ? "meshlm kto reads"
                    : "meshlm dpo and meshlm reward read"
                throw DataError("\(path): holds \(store.manifest.contents), which \(reader) as data.train or data.eval; a token stream comes from meshlm data tokenize")
            }
            if let eosId, eosId != store.manifest.eosId {
                throw DataError("\(path): the shards end documents with EOS id \(store.manifest.eosId), not \(eosId)")
            }
            return try TokenDataset(path: path, store: store, manifest: store.manifest, eosId: store.manifest.eosId,
                                    blockTokens: cache.blockTokens ?? store.manifest.chunkTokens, cache: cache)
        }
        let store: RawTokenFile
        if path.hasSuffix(".npy") {
            store = try RawTokenFile.npy(path)
        } else if path.hasSuffix(".bin") {
            store = try RawTokenFile.bin(path, type: binType)
        } else {
            throw DataError("\(path): not a token source (expected a directory with \(ShardManifest.fileName), a .bin or a .npy file)")
        }
        return try TokenDataset(path: path, store: store, manifest: nil, eosId: eosId,
                                blockTokens: cache.blockTokens ?? 1 << 16, cache: cache)
    }

    private init(path: String, store: any TokenStore, manifest: ShardManifest?, eosId: Int32?,
                 blockTokens: Int, cache: Cache) throws(DataError) {
        self.path = path
        self.store = store
        self.manifest = manifest
        self.eosId = eosId
        tokenCount = store.tokenCount
        if tokenCount <= cache.fullyCachedTokens {
            self.blockTokens = max(tokenCount, 1)
            maximumBlocks = 1
        } else {
            self.blockTokens = max(blockTokens, 1)
            maximumBlocks = max(cache.blocks, 2)
        }
    }

    /// Tokens `range` of the stream.
    public func tokens(_ range: Range<Int>) throws(DataError) -> [Int32] {
        var values = [Int32](repeating: 0, count: range.count)
        try values.withUnsafeMutableBufferPointer { (buffer) throws(DataError) in
            if let base = buffer.baseAddress { try read(range, into: base) }
        }
        return values
    }

    /// Copies tokens `range` of the stream to `destination` (which holds `range.count`).
    public func read(_ range: Range<Int>, into destination: UnsafeMutablePointer<Int32>) throws(DataError) {
        guard range.lowerBound >= 0, range.upperBound <= tokenCount else {
            throw DataError("\(path): tokens \(range.lowerBound)..<\(range.upperBound) are outside the \(tokenCount) tokens of the dataset")
        }
        guard !range.isEmpty else { return }
        let firstBlock = range.lowerBound / blockTokens
        let lastBlock = (range.upperBound - 1) / blockTokens
        for blockIndex in firstBlock...lastBlock {
            let blockStart = blockIndex * blockTokens
            let lower = max(range.lowerBound, blockStart)
            let upper = min(range.upperBound, blockStart + blockTokens)
            let tokens = try block(blockIndex)
            tokens.withUnsafeBufferPointer { buffer in
                (destination + (lower - range.lowerBound)).update(from: buffer.baseAddress! + (lower - blockStart), count: upper - lower)
            }
        }
    }

    private func block(_ index: Int) throws(DataError) -> [Int32] {
        if let position = blocks.firstIndex(where: { $0.index == index }) {
            if position != blocks.count - 1 { blocks.append(blocks.remove(at: position)) }
            return blocks[blocks.count - 1].tokens
        }
        let start = index * blockTokens
        let range = start..<min(start + blockTokens, tokenCount)
        var tokens = [Int32](repeating: 0, count: range.count)
        try tokens.withUnsafeMutableBufferPointer { (buffer) throws(DataError) in
            try store.read(range, into: buffer.baseAddress!)
        }
        if blocks.count == maximumBlocks { blocks.removeFirst() }
        blocks.append((index, tokens))
        return tokens
    }
}
