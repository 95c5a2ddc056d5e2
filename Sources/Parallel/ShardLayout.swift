import Model

/// How ZeRO splits the parameter arena over the data-parallel ranks: block by block, each
/// block padded to a multiple of the degree so every rank owns an equal contiguous shard of it.
///
/// Padding per block (not once for the whole arena) keeps a shard inside one block, so ZeRO-3
/// can gather exactly the block the model is about to use, and any vocabulary size works on any
/// degree: the padding elements are zero, get zero gradients, and are never read by the model.
public struct ShardLayout: Sendable {
    public struct Block: Sendable {
        public let block: ModelBlock
        /// The block's range in the unpadded `ParameterLayout` arena.
        public let range: Range<Int>
        /// Elements of the block padded up to a multiple of the degree.
        public let paddedCount: Int
        /// Where the padded block starts in a padded full arena.
        public let paddedOffset: Int
        /// `paddedCount / degree`: each rank's share.
        public let shardCount: Int
        /// Where this block's shard starts in a rank's shard arena.
        public let shardOffset: Int
    }

    /// A run of consecutive elements with one optimizer setting (weight decay, and LoRA+'s
    /// learning rate for B matrices), for the optimizer.
    public struct Segment: Sendable, Equatable {
        /// Index into `blocks` of the block the segment lies in.
        public let blockIndex: Int
        public let offset: Int
        public let count: Int
        public let decays: Bool
        /// Whether it is LoRA B matrices, which LoRA+ gives a larger learning rate.
        public var loraB = false
    }

    public let layout: ParameterLayout
    public let degree: Int
    public let rank: Int
    public let blocks: [Block]
    /// Σ padded block sizes.
    public let paddedCount: Int
    /// Σ shard sizes: this rank's share of the whole arena.
    public let shardCount: Int
    private let indexByBlock: [ModelBlock: Int]

    /// - Parameter blocks: the blocks to lay out (every block of `layout` by default; the
    ///   gradient and optimizer-state arenas hold only the blocks that train).
    public init(layout: ParameterLayout, degree: Int, rank: Int, blocks selected: [ModelBlock]? = nil) {
        precondition(degree >= 1 && (0..<degree).contains(rank))
        var blocks: [Block] = []
        var paddedOffset = 0, shardOffset = 0
        for block in selected ?? layout.blocks {
            let range = layout.range(of: block)
            let shard = (range.count + degree - 1) / degree
            blocks.append(Block(block: block, range: range, paddedCount: shard * degree, paddedOffset: paddedOffset,
                                shardCount: shard, shardOffset: shardOffset))
            paddedOffset += shard * degree
            shardOffset += shard
        }
        self.layout = layout
        self.degree = degree
        self.rank = rank
        self.blocks = blocks
        self.paddedCount = paddedOffset
        self.shardCount = shardOffset
        self.indexByBlock = Dictionary(uniqueKeysWithValues: blocks.enumerated().map { ($1.block, $0) })
    }

    /// Whether this layout holds `block`.
    public func contains(_ block: ModelBlock) -> Bool { indexByBlock[block] != nil }

    public subscript(block: ModelBlock) -> Block {
        guard let index = indexByBlock[block] else { preconditionFailure("no block \(block)") }
        return blocks[index]
    }

    /// The elements of block `b` that `rank` owns, relative to the block's start (may be
    /// shorter than `shardCount`, or empty, where the shard covers padding).
    public func ownedRange(of block: Block, rank: Int) -> Range<Int> {
        let start = Swift.min(rank * block.shardCount, block.range.count)
        let end = Swift.min((rank + 1) * block.shardCount, block.range.count)
        return start..<end
    }

    /// Weight-decay segments of a padded full arena (every element of every block).
    public func fullSegments() -> [Segment] {
        blocks.indices.flatMap { index in
            segments(of: index, elements: 0..<blocks[index].range.count, base: blocks[index].paddedOffset)
        }
    }

    /// Weight-decay segments of this rank's shard arena (padding excluded).
    public func shardSegments() -> [Segment] {
        blocks.indices.flatMap { index in
            let owned = ownedRange(of: blocks[index], rank: rank)
            return segments(of: index, elements: owned, base: blocks[index].shardOffset - owned.lowerBound)
        }
    }

    /// Splits `elements` (relative to the block start) by parameter entry; offsets are
    /// `base + element`.
    private func segments(of blockIndex: Int, elements: Range<Int>, base: Int) -> [Segment] {
        guard !elements.isEmpty else { return [] }
        let block = blocks[blockIndex]
        var result: [Segment] = []
        // Frozen tensors are left out: the optimizer never touches them.
        for entry in layout.entries(in: block.block) where entry.trainable {
            let start = entry.offset - block.range.lowerBound
            let lower = Swift.max(start, elements.lowerBound), upper = Swift.min(start + entry.count, elements.upperBound)
            guard lower < upper else { continue }
            let overlap = lower..<upper
            let loraB = entry.role.isLoRAB
            if let last = result.last, last.decays == entry.decays, last.loraB == loraB, last.offset + last.count == base + overlap.lowerBound {
                result[result.count - 1] = Segment(blockIndex: blockIndex, offset: last.offset, count: last.count + overlap.count,
                                                   decays: last.decays, loraB: loraB)
            } else {
                result.append(Segment(blockIndex: blockIndex, offset: base + overlap.lowerBound, count: overlap.count, decays: entry.decays,
                                      loraB: loraB))
            }
        }
        return result
    }
}
