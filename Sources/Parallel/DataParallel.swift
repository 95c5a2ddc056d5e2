import Model
import Runtime
import Tensors

/// How much of the training state ZeRO shards over the data-parallel ranks.
public enum ZeroStage: Int, Sendable, CaseIterable {
    /// Plain data parallelism: everything replicated; gradients all-reduced.
    case none = 0
    /// ZeRO-1: optimizer state sharded; gradients reduce-scattered, parameters all-gathered.
    case optimizerState = 1
    /// ZeRO-2: gradients sharded too; each block's gradients are reduce-scattered as soon as
    /// backward finishes them, and the full-size buffer is freed.
    case gradients = 2
    /// ZeRO-3: parameters sharded too; each block is all-gathered just before use and freed after.
    case parameters = 3
}

/// Data parallelism and ZeRO as a `ParameterAccess`: the model runs unchanged, and the
/// collectives happen in the acquire/release hooks (DESIGN §3, STYLE habit 1).
///
/// Communication, on the `data_context` communicator (dp × cp ranks):
/// - stage 0: each block's gradients are all-reduced (sum, `MPI_Iallreduce`) as soon as the last
///   micro-batch's backward releases them, overlapping the rest of backward; waited for in
///   `finishBackward`.
/// - stage 1: each block's gradients are reduce-scattered (`MPI_Ireduce_scatter_block`) on release
///   of the last micro-batch; after the update, each block's parameters are all-gathered.
/// - stage 2: the same reduce-scatter after *every* micro-batch, into a gradient shard that
///   accumulates; the block's full gradient buffer lives only between acquire and completion.
/// - stage 3: as stage 2, and `acquireParameters` all-gathers the block (`MPI_Allgather`) into a
///   buffer that `releaseParameters` frees when the last user releases it.
/// Requests progress (`MPI_Test`) at every hook, i.e. between layers (Open MPI makes no
/// asynchronous progress; docs/architecture.md, "Overlap").
///
/// The loss is a sum over the global batch scaled by 1 / (global target count), so the summed
/// gradients equal one rank's on the whole batch.
public final class DataParallelParameters: ParameterAccess {
    public let layout: ParameterLayout
    /// The parameter arenas' layout: every block.
    public let shards: ShardLayout
    /// The gradient and optimizer-state arenas' layout: only the blocks with a tensor that
    /// trains (a block frozen whole has no gradients, no moments and no reduction). A block's
    /// padded and shard sizes, and so the elements each rank owns, are the same in both.
    public let stateShards: ShardLayout
    public let stage: ZeroStage
    public let communicator: Communicator
    /// False for a forward-only model (a reference or a scorer): parameters only, no gradients,
    /// no optimizer state.
    public let isTrainable: Bool
    private let threads: KernelThreads

    /// Padded full parameters (stages 0–2); nil at stage 3.
    private let fullParameters: Tensor?
    /// This rank's parameter shard (stage 3).
    private let parameterShard: Tensor?
    /// Padded full gradients (stages 0–1).
    private let fullGradients: Tensor?
    /// This rank's reduced gradient shard (stages 1–3).
    private let gradientShard: Tensor?
    private let firstMoments: Tensor
    private let secondMoments: Tensor

    /// Whether releasing gradients starts their reduction in this backward (stages 0–1 reduce
    /// once per step, after the last micro-batch; stages 2–3 after every micro-batch).
    public var isLastMicroBatch = true

    private var gatheredParameters: [ModelBlock: (buffer: Tensor, users: Int)] = [:]
    private var blockGradients: [ModelBlock: Tensor] = [:]
    private var pending: [(request: Request, block: ModelBlock, received: Tensor?, send: Tensor?)] = []
    private var bufferPool: [Int: [Tensor]] = [:]
    /// Drives the reductions while backward computes (none on one rank).
    private let progressThread: ProgressThread?
    private var liveBufferBytes = 0
    /// High-water mark of temporary block buffers (gathered parameters, block gradients).
    public private(set) var peakBufferBytes = 0
    /// A checkpoint's snapshot for the next `step` to take as it updates (then completed and
    /// cleared): the save's copy rides on the optimizer's pass over memory.
    public var snapshot: StateSnapshot?

    /// - Parameter trainable: false for a forward-only model: no gradient or optimizer memory
    ///   (`acquireGradients` and `step` are then programmer errors).
    public init(layout: ParameterLayout, stage: ZeroStage, communicator: Communicator, threads: KernelThreads = .single,
                trainable: Bool = true) {
        self.layout = layout
        self.stage = stage
        self.communicator = communicator
        self.isTrainable = trainable
        self.threads = threads
        let shards = ShardLayout(layout: layout, degree: communicator.size, rank: communicator.rank)
        self.shards = shards
        let stateShards = ShardLayout(layout: layout, degree: communicator.size, rank: communicator.rank,
                                      blocks: trainable ? layout.blocks.filter { layout.trains($0) } : [])
        self.stateShards = stateShards
        fullParameters = stage == .parameters ? nil : Tensor(shape: [shards.paddedCount])
        parameterShard = stage == .parameters ? Tensor(shape: [shards.shardCount]) : nil
        fullGradients = trainable && stage.rawValue <= 1 ? Tensor(shape: [stateShards.paddedCount]) : nil
        gradientShard = trainable && stage.rawValue >= 1 ? Tensor(shape: [stateShards.shardCount]) : nil
        let stateCount = stage == .none ? stateShards.paddedCount : stateShards.shardCount
        firstMoments = Tensor(shape: [stateCount])
        secondMoments = Tensor(shape: [stateCount])
        progressThread = communicator.size > 1 ? ProgressThread() : nil
    }

    deinit { progressThread?.stop() }

    /// Records a started reduction and lets the progress thread drive it.
    private func track(_ request: Request, _ block: ModelBlock, received: Tensor? = nil, send: Tensor? = nil) {
        pending.append((request, block, received, send))
        progressThread?.watch(request)
    }

    // MARK: Loading and reading whole parameters

    /// Takes this rank's part of a full (unpadded, `layout`-ordered) parameter arena.
    public func load(_ parameters: UnsafePointer<Float>) {
        for block in shards.blocks {
            let source = parameters + block.range.lowerBound
            if let fullParameters {
                (fullParameters.pointer + block.paddedOffset).update(from: source, count: block.range.count)
            } else if let parameterShard {
                let owned = shards.ownedRange(of: block, rank: shards.rank)
                (parameterShard.pointer + block.shardOffset).update(from: source + owned.lowerBound, count: owned.count)
            }
        }
    }

    // MARK: ParameterAccess

    public func acquireParameters(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        progress()
        let info = shards[block]
        if let fullParameters { return fullParameters.pointer + info.paddedOffset }
        if let gathered = gatheredParameters[block] {
            gatheredParameters[block] = (gathered.buffer, gathered.users + 1)
            return gathered.buffer.pointer
        }
        let buffer = takeBuffer(count: info.paddedCount)
        guard let parameterShard else { preconditionFailure("stage 3 keeps a parameter shard") }
        (buffer.pointer + shards.rank * info.shardCount).update(from: parameterShard.pointer + info.shardOffset, count: info.shardCount)
        orAbort { try communicator.allgatherInPlace(buffer.buffer.prefix(info.paddedCount).rebased) }
        gatheredParameters[block] = (buffer, 1)
        return buffer.pointer
    }

    public func releaseParameters(_ block: ModelBlock) {
        progress()
        guard let gathered = gatheredParameters[block] else { return }
        if gathered.users > 1 {
            gatheredParameters[block] = (gathered.buffer, gathered.users - 1)
        } else {
            gatheredParameters[block] = nil
            returnBuffer(gathered.buffer)
        }
    }

    public func acquireGradients(_ block: ModelBlock) -> UnsafeMutablePointer<Float> {
        precondition(isTrainable, "gradients of a forward-only model's \(block)")
        progress()
        let info = stateShards[block]
        if let fullGradients { return fullGradients.pointer + info.paddedOffset }
        if let existing = blockGradients[block] { return existing.pointer }
        let buffer = takeBuffer(count: info.paddedCount)
        blockGradients[block] = buffer
        return buffer.pointer
    }

    public func releaseGradients(_ block: ModelBlock) {
        let info = stateShards[block]
        switch stage {
        case .none:
            guard isLastMicroBatch, let fullGradients else { break }
            let region = UnsafeMutableBufferPointer(start: fullGradients.pointer + info.paddedOffset, count: info.paddedCount)
            orAbort { track(try communicator.allreduceNonBlocking(region, .sum), block) }
        case .optimizerState:
            guard isLastMicroBatch, let fullGradients, let gradientShard else { break }
            let send = UnsafeBufferPointer(start: fullGradients.pointer + info.paddedOffset, count: info.paddedCount)
            let receive = UnsafeMutableBufferPointer(start: gradientShard.pointer + info.shardOffset, count: info.shardCount)
            orAbort { track(try communicator.reduceScatterNonBlocking(send, into: receive, .sum), block) }
        case .gradients, .parameters:
            guard let gradients = blockGradients.removeValue(forKey: block) else { break }
            let received = takeBuffer(count: info.shardCount)
            let send = UnsafeBufferPointer(start: gradients.pointer, count: info.paddedCount)
            orAbort {
                track(try communicator.reduceScatterNonBlocking(send, into: received.buffer.prefix(info.shardCount).rebased, .sum),
                      block, received: received, send: gradients)
            }
        }
        progress()
    }

    // MARK: The step

    /// Waits for every outstanding reduction of this backward.
    public func finishBackward() throws {
        while !pending.isEmpty { try complete(0, wait: true) }
    }

    /// This rank's reduced gradients of `block` after `finishBackward`: the whole padded block at
    /// stage 0, this rank's shard of it otherwise (the same elements on every rank of the same
    /// data-parallel index, whatever else their layouts hold, since blocks are sharded one by one).
    public func reducedGradients(of block: ModelBlock) -> UnsafeMutableBufferPointer<Float> {
        let entry = stateShards[block]
        if stage == .none, let fullGradients {
            return UnsafeMutableBufferPointer(start: fullGradients.pointer + entry.paddedOffset, count: entry.paddedCount)
        }
        guard let gradientShard else { preconditionFailure("no gradient storage") }
        return UnsafeMutableBufferPointer(start: gradientShard.pointer + entry.shardOffset, count: entry.shardCount)
    }

    /// The global L2 norm of the reduced gradients (collective for stages 1–3).
    public func gradientNorm() throws -> Double {
        var sum = 0.0
        if stage == .none, let fullGradients {
            for block in stateShards.blocks { sum += sumOfSquares(fullGradients.pointer + block.paddedOffset, count: block.range.count) }
            return sum.squareRoot()
        }
        guard let gradientShard else { return 0 }
        for block in stateShards.blocks {
            sum += sumOfSquares(gradientShard.pointer + block.shardOffset, count: stateShards.ownedRange(of: block, rank: stateShards.rank).count)
        }
        return try communicator.allreduce(sum, .sum).squareRoot()
    }

    /// Σ of the squared reduced gradients this rank holds (all of them at stage 0, its shard
    /// otherwise) over the entries `counts` accepts, by index into `layout.entries`; no
    /// communication. Tensor parallelism sums it over its group, counting replicated tensors once.
    public func localSquaredGradientSum(counts: (Int) -> Bool) -> Double {
        var sum = 0.0
        for (index, entry) in layout.entries.enumerated() where counts(index) && stateShards.contains(entry.block) {
            let block = stateShards[entry.block]
            let start = entry.offset - block.range.lowerBound
            if stage == .none, let fullGradients {
                sum += sumOfSquares(fullGradients.pointer + block.paddedOffset + start, count: entry.count)
            } else if let gradientShard {
                let owned = stateShards.ownedRange(of: block, rank: stateShards.rank)
                let lower = Swift.max(start, owned.lowerBound), upper = Swift.min(start + entry.count, owned.upperBound)
                guard lower < upper else { continue }
                sum += sumOfSquares(gradientShard.pointer + block.shardOffset + (lower - owned.lowerBound), count: upper - lower)
            }
        }
        return sum
    }

    /// Scales the reduced gradients by `gradientScale` (clipping), applies AdamW to this rank's
    /// share, all-gathers the parameters where needed (stages 1–2), and zeroes the gradients.
    /// LoRA B matrices learn at `loraPlusRatio` × the learning rate (LoRA+; 1: as the rest).
    public func step(settings: AdamW.Settings, stepNumber: Int, gradientScale: Float, loraPlusRatio: Float = 1) throws {
        precondition(isTrainable, "an optimizer step on a forward-only model")
        func settingsOf(_ segment: ShardLayout.Segment) -> AdamW.Settings {
            var segmentSettings = settings
            if !segment.decays { segmentSettings.weightDecay = 0 }
            if segment.loraB { segmentSettings.learningRate *= loraPlusRatio }
            return segmentSettings
        }
        if stage == .none, let fullParameters, let fullGradients {
            for segment in stateShards.fullSegments() {
                // The state arenas skip blocks frozen whole: the same block's place in the parameters.
                let stateBlock = stateShards.blocks[segment.blockIndex]
                let parameters = fullParameters.pointer + shards[stateBlock.block].paddedOffset + (segment.offset - stateBlock.paddedOffset)
                update(parameters: parameters, gradients: fullGradients.pointer + segment.offset,
                       state: segment.offset, count: segment.count, scale: gradientScale,
                       settings: settingsOf(segment), stepNumber: stepNumber)
            }
            fullGradients.zero()
            completeSnapshot()
            return
        }
        guard let gradientShard else { return }
        for segment in stateShards.shardSegments() {
            let stateBlock = stateShards.blocks[segment.blockIndex]
            let block = shards[stateBlock.block]
            let offsetInShard = segment.offset - stateBlock.shardOffset
            let parameters: UnsafeMutablePointer<Float>
            if let parameterShard {
                parameters = parameterShard.pointer + block.shardOffset + offsetInShard
            } else if let fullParameters {
                // The shard arena offset maps into this rank's slice of the padded block.
                parameters = fullParameters.pointer + block.paddedOffset + shards.rank * block.shardCount + offsetInShard
            } else {
                preconditionFailure("no parameter storage")
            }
            update(parameters: parameters, gradients: gradientShard.pointer + segment.offset, state: segment.offset,
                   count: segment.count, scale: gradientScale, settings: settingsOf(segment), stepNumber: stepNumber)
        }
        gradientShard.zero()
        fullGradients?.zero()
        completeSnapshot()
        if stage != .parameters, let fullParameters {
            // Blocks frozen whole did not change.
            for block in stateShards.blocks.map({ shards[$0.block] }) {
                try communicator.allgatherInPlace(UnsafeMutableBufferPointer(start: fullParameters.pointer + block.paddedOffset,
                                                                            count: block.paddedCount))
            }
        }
    }

    private func update(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: Int, count: Int,
                        scale: Float, settings: AdamW.Settings, stepNumber: Int) {
        let first = firstMoments.pointer + state, second = secondMoments.pointer + state
        guard let snapshot else {
            AdamW.update(parameters: parameters, firstMoments: first, secondMoments: second,
                         gradients: gradients, count: count, step: stepNumber, settings: settings, gradientScale: scale, threads: threads)
            return
        }
        for piece in snapshot.pieces(parameters: parameters, firstMoments: first, secondMoments: second, count: count) {
            let offset = piece.elements.lowerBound
            AdamW.update(parameters: parameters + offset, firstMoments: first + offset, secondMoments: second + offset,
                         gradients: gradients + offset, count: piece.elements.count, step: stepNumber, settings: settings,
                         gradientScale: scale, snapshot: piece.snapshot, threads: threads)
        }
    }

    private func completeSnapshot() {
        snapshot?.complete()
        snapshot = nil
    }

    /// Bytes held for the whole run on this rank: parameters, gradients, optimizer state.
    public var residentBytes: (parameters: Int, gradients: Int, optimizerState: Int) {
        let floats = MemoryLayout<Float>.stride
        return ((fullParameters?.count ?? 0) * floats + (parameterShard?.count ?? 0) * floats,
                (fullGradients?.count ?? 0) * floats + (gradientShard?.count ?? 0) * floats,
                (firstMoments.count + secondMoments.count) * floats)
    }

    // MARK: Requests and buffers

    /// Tests outstanding requests; completes those that finished.
    private func progress() {
        var index = 0
        while index < pending.count {
            let done = orAbort { try pending[index].request.test() }
            if done { orAbort { try complete(index, wait: false) } } else { index += 1 }
        }
    }

    private func complete(_ index: Int, wait: Bool) throws {
        let item = pending.remove(at: index)
        if wait { try item.request.wait() }
        if let received = item.received, let gradientShard {
            // Stages 2–3: accumulate this micro-batch's reduced shard.
            let info = stateShards[item.block]
            let shard = gradientShard.pointer + info.shardOffset
            for element in 0..<info.shardCount { shard[element] += received.pointer[element] }
            returnBuffer(received)
        }
        if let send = item.send { returnBuffer(send) }
    }

    private func takeBuffer(count: Int) -> Tensor {
        let buffer: Tensor
        if var free = bufferPool[count], let reused = free.popLast() {
            bufferPool[count] = free
            reused.zero()
            buffer = reused
        } else {
            buffer = Tensor(shape: [count])
        }
        liveBufferBytes += count * MemoryLayout<Float>.stride
        peakBufferBytes = max(peakBufferBytes, liveBufferBytes)
        return buffer
    }

    private func returnBuffer(_ buffer: Tensor) {
        liveBufferBytes -= buffer.count * MemoryLayout<Float>.stride
        bufferPool[buffer.count, default: []].append(buffer)
    }

    private func sumOfSquares(_ values: UnsafePointer<Float>, count: Int) -> Double {
        SumOfSquares.compute(values, count: count)
    }
}

/// Runs an MPI call from a hook that cannot throw; a failure there is this rank's alone, so it
/// ends the job the way `SPMDJob` ends one failing rank.
@discardableResult
func orAbort<T>(_ body: () throws -> T) -> T {
    do {
        return try body()
    } catch {
        Log.write("meshlm: error (rank \(MPIEnvironment.worldRank)): \(error)\n", to: .standardError)
        MPIEnvironment.abort(code: 1)
    }
}

extension Slice where Base == UnsafeMutableBufferPointer<Float> {
    var rebased: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(rebasing: self) }
}

/// One tensor's elements as one rank holds them: what a checkpoint saves or loads.
public struct TensorSlice {
    /// The HF name, prefixed for optimizer state (`optimizer.exp_avg.…`, `optimizer.exp_avg_sq.…`).
    public let name: String
    /// The parameter's index in the layout's entries.
    public let parameterIndex: Int
    public let shape: [Int]
    /// Elements of the flattened tensor.
    public let elements: Range<Int>
    /// Where those elements live on this rank.
    public let pointer: UnsafeMutablePointer<Float>
}

extension DataParallelParameters {
    /// The state a checkpoint holds for every parameter.
    public enum StateKind: CaseIterable, Sendable {
        case parameters, firstMoments, secondMoments

        func name(_ parameter: String) -> String {
            switch self {
            case .parameters: parameter
            case .firstMoments: "optimizer.exp_avg." + parameter
            case .secondMoments: "optimizer.exp_avg_sq." + parameter
            }
        }
    }

    /// What this rank writes to a checkpoint: its owned share of every tensor (ZeRO's shard;
    /// with replicated state the same split, so every rank writes 1/dp of it).
    public func ownedSlices(_ kind: StateKind) -> [TensorSlice] {
        slices(kind, everything: false)
    }

    /// What this rank must read from a checkpoint to hold `kind` in this layout: whole tensors
    /// where it keeps them replicated, its shard where ZeRO shards them.
    public func neededSlices(_ kind: StateKind) -> [TensorSlice] {
        let replicated = kind == .parameters ? stage != .parameters : stage == .none
        return slices(kind, everything: replicated)
    }

    private func slices(_ kind: StateKind, everything: Bool) -> [TensorSlice] {
        var result: [TensorSlice] = []
        // Moments exist only for the blocks that train.
        let blocks = kind == .parameters ? shards : stateShards
        for block in blocks.blocks {
            let owned = blocks.ownedRange(of: block, rank: blocks.rank)
            let held = everything ? 0..<block.range.count : owned
            for entry in layout.entries(in: block.block) {
                let start = entry.offset - block.range.lowerBound
                let lower = Swift.max(start, held.lowerBound), upper = Swift.min(start + entry.count, held.upperBound)
                guard lower < upper else { continue }
                guard let index = layout.index(named: entry.name) else { preconditionFailure("no \(entry.name)") }
                result.append(TensorSlice(name: kind.name(entry.name), parameterIndex: index, shape: entry.shape,
                                          elements: (lower - start)..<(upper - start),
                                          pointer: storage(kind, block: block, owned: owned, element: lower)))
            }
        }
        return result
    }

    /// Where block-relative element `element` of `kind` lives on this rank.
    private func storage(_ kind: StateKind, block: ShardLayout.Block, owned: Range<Int>, element: Int) -> UnsafeMutablePointer<Float> {
        switch kind {
        case .parameters:
            if let fullParameters { return fullParameters.pointer + block.paddedOffset + element }
            guard let parameterShard else { preconditionFailure("no parameter storage") }
            return parameterShard.pointer + block.shardOffset + (element - owned.lowerBound)
        case .firstMoments, .secondMoments:
            let moments = kind == .firstMoments ? firstMoments : secondMoments
            return stage == .none ? moments.pointer + block.paddedOffset + element
                                  : moments.pointer + block.shardOffset + (element - owned.lowerBound)
        }
    }
}
