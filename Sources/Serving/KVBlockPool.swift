import Tensors

/// The paged KV cache (PagedAttention's idea): keys and values of every layer live in fixed-size
/// blocks of `blockSize` token slots, and each sequence owns a block table mapping its positions
/// to blocks, so memory is reserved one block at a time instead of one context length per
/// sequence.
///
///     keys, values  [layers, blockCount, blockSize, kvHeads × headDim]
///
/// Prefix sharing: a block filled entirely with prompt tokens is registered under a hash chained
/// from its tokens and the previous block's hash, so two prompts with the same first tokens map
/// to the same blocks (reference-counted). A block whose count falls to zero keeps its contents
/// and registration while it waits on the free list (least recently freed is reused first), so
/// a later request with the same prefix can revive it.
public final class KVBlockPool {
    public let blockCount: Int
    public let blockSize: Int
    public let layerCount: Int
    /// Floats per token slot per layer: kvHeads × headDim.
    public let slotWidth: Int
    let keys: Tensor
    let values: Tensor

    private var referenceCounts: [Int]
    /// Free blocks, oldest-freed first; `freeHead` is the next to hand out.
    private var freeList: [Int]
    private var freeHead = 0
    private var isFree: [Bool]
    private var blockByHash: [UInt64: Int] = [:]
    private var hashByBlock: [UInt64?]
    /// The tokens of each registered block, compared on sharing so a hash collision cannot hand
    /// a sequence another prompt's keys.
    private var tokensByBlock: [[Int32]]

    public init(blockCount: Int, blockSize: Int, layerCount: Int, slotWidth: Int) {
        precondition(blockCount >= 1 && blockSize >= 1, "a KV cache needs at least one block of one slot")
        self.blockCount = blockCount
        self.blockSize = blockSize
        self.layerCount = layerCount
        self.slotWidth = slotWidth
        keys = Tensor(shape: [layerCount, blockCount, blockSize, slotWidth])
        values = Tensor(shape: [layerCount, blockCount, blockSize, slotWidth])
        referenceCounts = Array(repeating: 0, count: blockCount)
        freeList = Array(0..<blockCount)
        isFree = Array(repeating: true, count: blockCount)
        hashByBlock = Array(repeating: nil, count: blockCount)
        tokensByBlock = Array(repeating: [], count: blockCount)
    }

    /// Blocks no sequence holds (some may still carry a reusable prefix).
    public var freeBlockCount: Int { freeList.count - freeHead }

    /// A block for new contents; nil when every block is held.
    public func allocate() -> Int? {
        guard freeHead < freeList.count else { return nil }
        let block = freeList[freeHead]
        freeHead += 1
        compactFreeList()
        isFree[block] = false
        referenceCounts[block] = 1
        if let hash = hashByBlock[block] {
            blockByHash[hash] = nil
            hashByBlock[block] = nil
            tokensByBlock[block] = []
        }
        return block
    }

    /// The block registered under `hash`, with its reference count raised; nil if none.
    public func share(hash: UInt64, tokens: ArraySlice<Int32>) -> Int? {
        guard let block = blockByHash[hash], tokensByBlock[block].elementsEqual(tokens) else { return nil }
        if isFree[block] {
            // Revive it from the free list.
            if let index = freeList[freeHead...].firstIndex(of: block) { freeList.remove(at: index) }
            isFree[block] = false
        }
        referenceCounts[block] += 1
        return block
    }

    /// Records that `block` holds the full prompt block whose chained hash is `hash`.
    public func register(block: Int, hash: UInt64, tokens: ArraySlice<Int32>) {
        guard blockByHash[hash] == nil, hashByBlock[block] == nil else { return }
        blockByHash[hash] = block
        hashByBlock[block] = hash
        tokensByBlock[block] = Array(tokens)
    }

    /// Adds a reference to a block a sequence already holds: the samples of one request share
    /// their prompt's full blocks this way (no hash needed, with or without prefix sharing).
    public func retain(_ block: Int) {
        precondition(referenceCounts[block] > 0, "block \(block) is free; only a held block can be shared")
        referenceCounts[block] += 1
    }

    /// Forgets every registered prefix, so no later `share` hands out keys and values computed
    /// before now (after the model's weights were replaced). Contents and reference counts stay;
    /// free blocks are simply reused as empty ones.
    public func dropCachedPrefixes() {
        blockByHash.removeAll()
        for block in 0..<blockCount where hashByBlock[block] != nil {
            hashByBlock[block] = nil
            tokensByBlock[block] = []
        }
    }

    /// How many blocks carry a registered prefix (held or free).
    public var cachedPrefixBlockCount: Int { blockByHash.count }

    /// Drops one reference; at zero the block returns to the free list.
    public func release(_ block: Int) {
        precondition(referenceCounts[block] > 0, "block \(block) released more often than taken")
        referenceCounts[block] -= 1
        if referenceCounts[block] == 0 {
            isFree[block] = true
            freeList.append(block)
        }
    }

    public func referenceCount(of block: Int) -> Int { referenceCounts[block] }

    /// The key slots of `block` in `layer`: [blockSize, slotWidth].
    @inline(__always)
    func keySlots(layer: Int, block: Int) -> UnsafeMutablePointer<Float> {
        keys.pointer + ((layer * blockCount + block) * blockSize) * slotWidth
    }

    @inline(__always)
    func valueSlots(layer: Int, block: Int) -> UnsafeMutablePointer<Float> {
        values.pointer + ((layer * blockCount + block) * blockSize) * slotWidth
    }

    private func compactFreeList() {
        if freeHead > 1024 && freeHead * 2 > freeList.count {
            freeList.removeFirst(freeHead)
            freeHead = 0
        }
    }

    /// The chained hash of one full block of tokens (FNV-1a over the previous hash and the ids).
    public static func chainHash(previous: UInt64, tokens: ArraySlice<Int32>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ previous
        for token in tokens {
            var value = UInt32(bitPattern: token)
            for _ in 0..<4 {
                hash ^= UInt64(value & 0xff)
                hash = hash &* 0x100_0000_01b3
                value >>= 8
            }
        }
        return hash
    }
}
