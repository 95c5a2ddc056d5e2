/// Where a run is in its data: `offset` samples of epoch `epoch` consumed. Stored in the trainer
/// state of a checkpoint; independent of the data-parallel degree.
public struct DataPosition: Codable, Equatable, Hashable, Sendable {
    public var epoch: Int
    public var offset: Int

    public static let start = DataPosition(epoch: 0, offset: 0)

    public init(epoch: Int, offset: Int) {
        self.epoch = epoch
        self.offset = offset
    }

    /// The position after `consumedSamples` samples from the start.
    public init(consumedSamples: Int, sampleCount: Int) {
        precondition(sampleCount > 0 && consumedSamples >= 0)
        self.init(epoch: consumedSamples / sampleCount, offset: consumedSamples % sampleCount)
    }

    /// Samples consumed since the start.
    public func consumedSamples(sampleCount: Int) -> Int { epoch * sampleCount + offset }

    enum CodingKeys: String, CodingKey { case epoch, offset }
}

/// The data schedule of data-parallel training, by global sample index (like PyTorch's
/// `DistributedSampler`, but indexed so that any dp degree sees the same batches).
///
/// Each epoch visits every sample once in the order of a seeded permutation (`SamplePermutation`,
/// keyed by seed and epoch). The samples form one endless sequence, epoch after epoch; a global
/// step takes the next `globalBatchSize` of them (a batch may span an epoch boundary), and
/// data-parallel rank r of D takes the contiguous slice
/// `[r·G/D, (r+1)·G/D)` of that batch, split into micro-batches of `microBatchSize`.
///
/// Nothing here depends on D except which slice a rank takes, so a run's position is one
/// `DataPosition`, and a run resumed at that position on another dp degree continues with
/// exactly the samples it would have seen: none skipped, none repeated.
public struct DistributedSampler: Sendable {
    public let sampleCount: Int
    public let globalBatchSize: Int
    public let microBatchSize: Int
    public let dataParallelDegree: Int
    public let seed: UInt64
    /// false: every epoch in index order (eval).
    public let shuffle: Bool

    /// Micro-batches each rank runs per step (gradient accumulation): G / (D × micro-batch).
    public var microBatchesPerStep: Int { globalBatchSize / (dataParallelDegree * microBatchSize) }
    /// Samples per rank per step.
    public var localBatchSize: Int { globalBatchSize / dataParallelDegree }

    /// Checks the batch arithmetic: G must be divisible by D × micro-batch.
    public init(sampleCount: Int, globalBatchSize: Int, microBatchSize: Int, dataParallelDegree: Int,
                seed: UInt64, shuffle: Bool = true) throws(DataError) {
        guard sampleCount >= 1 else { throw DataError("the data holds no samples") }
        guard globalBatchSize >= 1 else { throw DataError("global batch size must be at least 1, got \(globalBatchSize)") }
        guard microBatchSize >= 1 else { throw DataError("micro batch size must be at least 1, got \(microBatchSize)") }
        guard dataParallelDegree >= 1 else {
            throw DataError("data parallel degree must be at least 1, got \(dataParallelDegree)")
        }
        guard globalBatchSize % (dataParallelDegree * microBatchSize) == 0 else {
            throw DataError("global batch size \(globalBatchSize) must be divisible by data parallel degree \(dataParallelDegree) × micro batch size \(microBatchSize) = \(dataParallelDegree * microBatchSize)")
        }
        self.sampleCount = sampleCount
        self.globalBatchSize = globalBatchSize
        self.microBatchSize = microBatchSize
        self.dataParallelDegree = dataParallelDegree
        self.seed = seed
        self.shuffle = shuffle
    }

    /// The sample at `offset` of epoch `epoch`.
    public func sampleIndex(epoch: Int, offset: Int) -> Int {
        shuffle ? SamplePermutation(count: sampleCount, seed: seed, epoch: epoch)[offset] : offset
    }

    /// The position of global step `step` of a run that started at the beginning.
    public func position(ofStep step: Int) -> DataPosition {
        DataPosition(consumedSamples: step * globalBatchSize, sampleCount: sampleCount)
    }

    /// The position after `steps` more steps.
    public func position(after position: DataPosition, steps: Int = 1) -> DataPosition {
        DataPosition(consumedSamples: position.consumedSamples(sampleCount: sampleCount) + steps * globalBatchSize,
                     sampleCount: sampleCount)
    }

    /// The `globalBatchSize` sample indices of the step that starts at `position`.
    public func globalBatch(at position: DataPosition) -> [Int] {
        samples(at: position, range: 0..<globalBatchSize)
    }

    /// Rank `rank`'s contiguous slice of the global batch at `position`.
    public func localBatch(at position: DataPosition, rank: Int) -> [Int] {
        precondition(rank >= 0 && rank < dataParallelDegree, "rank \(rank) outside 0..<\(dataParallelDegree)")
        return samples(at: position, range: rank * localBatchSize..<(rank + 1) * localBatchSize)
    }

    /// Rank `rank`'s slice cut into `microBatchesPerStep` micro-batches of `microBatchSize`.
    public func localMicroBatches(at position: DataPosition, rank: Int) -> [[Int]] {
        let local = localBatch(at: position, rank: rank)
        return stride(from: 0, to: local.count, by: microBatchSize).map { Array(local[$0..<($0 + microBatchSize)]) }
    }

    /// Samples `range` (offsets within the batch) of the batch starting at `position`.
    private func samples(at position: DataPosition, range: Range<Int>) -> [Int] {
        let first = position.consumedSamples(sampleCount: sampleCount) + range.lowerBound
        var result = [Int]()
        result.reserveCapacity(range.count)
        var epoch = first / sampleCount
        var offset = first % sampleCount
        var permutation = shuffle ? SamplePermutation(count: sampleCount, seed: seed, epoch: epoch) : nil
        for _ in range {
            result.append(permutation?[offset] ?? offset)
            offset += 1
            if offset == sampleCount {
                offset = 0
                epoch += 1
                if shuffle { permutation = SamplePermutation(count: sampleCount, seed: seed, epoch: epoch) }
            }
        }
        return result
    }
}
