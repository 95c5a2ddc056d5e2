import CSupport
import Foundation
import Runtime

/// Saves one checkpoint, collectively over `communicator` (docs/checkpoints.md).
///
/// 1. `init` (collective): rank 0 creates `directory/step_NNNNNNNN/`, first deleting a
///    leftover of an earlier attempt at the same step.
/// 2. `add` (local): copies one slice of a tensor into this writer's staging buffers; the
///    caller's arrays may change as soon as it returns.
/// 3. `writeShardInBackground` (local, optional): compresses the staged slices and writes and
///    fsyncs `rank_RRRRR.bin` on a background thread while the caller trains on.
/// 4. `commit` (collective): finishes the shard file if step 3 did not, gathers every rank's
///    slice records on rank 0, which writes `index.json`, `metadata.json`, then `COMMITTED` and
///    `latest` by rename, and deletes checkpoints beyond the newest `keep`.
///
/// Any rank failing in step 1 or 4 makes every rank throw the same `CollectiveFailure`; a rank
/// that dies instead leaves the step directory without `COMMITTED`, which readers skip.
public final class CheckpointWriter: @unchecked Sendable {
    public let directory: String
    public let step: Int
    public let stepDirectory: String
    public let communicator: Communicator
    /// zstd level of the frames (1 is fastest; see docs/checkpoints.md, "Compression level").
    public let compressionLevel: Int32

    /// Staged slices: where each one's copy sits in `staging`.
    private struct StagedSlice {
        let name: String
        let shape: [Int]
        let elements: Range<Int>
        let offset: Int
    }

    private var staged: [StagedSlice] = []
    private let staging: CheckpointStaging
    /// How the background writer thread yields to training, and its nice value for `.nice`
    /// (0: the trainer's own priority).
    public var backgroundPriority = BackgroundPriority.nice
    public var backgroundNice: Int32 = 0
    /// Threads that compress frames at once when the shard is written in `commit` (a
    /// synchronous save: the end of a run, a stop); a background write uses one, at
    /// `backgroundNice`, so training keeps the cores.
    public var compressionThreads = 1
    /// Share of wall time the background writer works (0 < share ≤ 1): after each frame it
    /// sleeps so that its work is at most this share, spreading a save over more steps so it
    /// takes less memory bandwidth from training at a time. 1: no pauses.
    public var backgroundDutyCycle = 1.0
    /// Whether frames are compressed (`checkpoint.compression`; `auto` decides from the rates
    /// the save measures).
    public var compression = CheckpointCompression.auto
    private var stagedNames: [String: [Int]] = [:]
    /// Set once the shard file is written (by `writeShard`, possibly on the background thread).
    private var shardResult: Result<[CheckpointIndex.Tensor], CheckpointError>?
    /// Guards `shardResult` between the background thread and `isShardWritten`.
    private let resultLock = NSLock()
    private var background: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private var isCommitted = false

    /// `staging` is reused across saves by a trainer (no page faults for fresh buffers each
    /// time); it must not be given to another writer before this one's shard is written.
    public init(directory: String, step: Int, communicator: Communicator, compressionLevel: Int32 = 1,
                staging: CheckpointStaging = CheckpointStaging()) throws {
        staging.reset()
        self.staging = staging
        precondition(step >= 0, "checkpoint step \(step) is negative")
        self.directory = directory
        self.step = step
        self.stepDirectory = directory + "/" + CheckpointFiles.stepDirectoryName(step)
        self.communicator = communicator
        self.compressionLevel = compressionLevel
        let stepDirectory = self.stepDirectory
        try communicator.collectively {
            guard communicator.rank == 0 else { return }
            if FileManager.default.fileExists(atPath: stepDirectory) {
                try CheckpointFiles.removeStepDirectory(stepDirectory)
            }
            do {
                try FileManager.default.createDirectory(atPath: stepDirectory, withIntermediateDirectories: true)
            } catch {
                throw CheckpointError(.io, "cannot create checkpoint directory \(stepDirectory): \(FileProblem.reason(error, path: stepDirectory)); choose another run.dir or output directory")
            }
            try CheckpointFiles.syncDirectory(containing: stepDirectory)
        }
    }

    public var shardFile: String { CheckpointFiles.shardName(rank: communicator.rank) }

    /// Stages elements `elements` of the flattened tensor `name` (of shape `globalShape`) held by
    /// this rank. A rank may add several slices of one tensor; no two slices of a tensor, on any
    /// rank, may overlap (checked at `commit`). An empty range adds nothing.
    public func add(name: String, globalShape: [Int], elements: Range<Int>, values: UnsafeBufferPointer<Float>) {
        precondition(values.count == elements.count, "tensor \(name): \(values.count) values for elements \(elements)")
        let offset = addDeferred(name: name, globalShape: globalShape, elements: elements)
        if let base = values.baseAddress, !elements.isEmpty { stagedValues(at: offset).update(from: base, count: values.count) }
    }

    /// Stages a slice like `add` but leaves its values to the caller: they must be written to
    /// `stagedValues(at:count:)` of the returned offset before the shard is written (a trainer
    /// copies them lazily, in its next optimizer step; `StateSnapshot`).
    public func addDeferred(name: String, globalShape: [Int], elements: Range<Int>) -> Int {
        precondition(background == nil && !isCommitted, "add after writeShardInBackground or commit")
        let count = globalShape.reduce(1, *)
        precondition(elements.lowerBound >= 0 && elements.upperBound <= count,
                     "tensor \(name): elements \(elements) outside its \(count) elements")
        if let shape = stagedNames[name] { precondition(shape == globalShape, "tensor \(name) added with shapes \(shape) and \(globalShape)") }
        stagedNames[name] = globalShape
        guard !elements.isEmpty else { return staging.count }
        let offset = staging.claim(elements.count)
        staged.append(StagedSlice(name: name, shape: globalShape, elements: elements, offset: offset))
        return offset
    }

    /// Where a deferred slice's values go; valid until the next `add`/`addDeferred` (which may
    /// move the staging buffer), so taken after the last of them.
    public func stagedValues(at offset: Int) -> UnsafeMutablePointer<Float> { staging.pointer + offset }

    /// Compresses and writes the shard file on a background thread (the staged copies are
    /// already taken, so training may go on changing its arrays); `commit` waits for it.
    public func writeShardInBackground() {
        precondition(background == nil && shardResult == nil, "shard written twice")
        let thread = Thread { [self] in
            // Lower priority: on a node whose cores all train, the write yields to training.
            backgroundPriority.apply(nice: backgroundNice)
            writeShard()
            finished.signal()
        }
        thread.name = "checkpoint-writer"
        background = thread
        thread.start()
    }

    /// Whether this rank's shard file is finished (written or failed); never blocks. A trainer
    /// polls it to commit an asynchronous save at a step boundary once every rank is done.
    public var isShardWritten: Bool {
        resultLock.lock()
        defer { resultLock.unlock() }
        return shardResult != nil
    }

    /// Whether this rank's shard file is done and failed (a full disk, an I/O error): `commit`
    /// then reports it.
    public var shardWriteFailed: Bool {
        resultLock.lock()
        defer { resultLock.unlock() }
        if case .failure = shardResult { return true }
        return false
    }

    /// Seconds the shard file took to compress, write and fsync, and its size (set with the
    /// result; read after `isShardWritten` or `commit`), for `meshlm bench checkpoint`.
    public private(set) var writeSeconds = 0.0
    public private(set) var writtenBytes = 0
    public private(set) var stagedBytes = 0
    /// How many frames the last write compressed and stored raw.
    public private(set) var frameCounts = (compressed: 0, stored: 0)

    private func writeShard() {
        let start = DispatchTime.now().uptimeNanoseconds
        stagedBytes = staging.count * 4
        let result: Result<[CheckpointIndex.Tensor], CheckpointError>
        let frames = staged.map { FrameSource(name: $0.name, shape: $0.shape, elements: $0.elements, bytes: staging.pointer + $0.offset) }
        let choice = CompressionChoice(compression)
        do throws(CheckpointError) {
            result = .success(try Self.writeShardFile(frames, declared: stagedNames, directory: stepDirectory, file: shardFile,
                                                      compressionLevel: compressionLevel, choice: choice,
                                                      threads: background == nil ? compressionThreads : 1,
                                                      dutyCycle: background == nil ? 1 : backgroundDutyCycle))
        } catch {
            result = .failure(error)
        }
        staged = []
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let bytes = (try? result.get())?.reduce(0) { $0 + $1.slices.reduce(0) { $0 + $1.length } } ?? 0
        resultLock.lock()
        frameCounts = choice.counts
        writeSeconds = seconds
        writtenBytes = bytes
        shardResult = result
        resultLock.unlock()
    }

    /// Writes `slices` as one shard file `directory/file`: one frame per slice, appended in
    /// order, fsync'd before returning. `declared` lists every tensor the rank saves (with its
    /// shape), so tensors of which it holds no elements still reach the index.
    /// Read-only views into the staging buffer, which outlives the write: safe to hand to the
    /// compression threads.
    struct FrameSource: @unchecked Sendable {
        let name: String
        let shape: [Int]
        let elements: Range<Int>
        /// `dtype.byteCount(elements: elements.count)` bytes.
        let bytes: UnsafeRawPointer
        var dtype = CheckpointDType.f32
    }

    /// Elements per frame at most (16 MB of f32): large tensors become several frames, so
    /// frames compress in parallel and a reader decompresses only what it needs.
    static let frameElements = 1 << 22

    static func writeShardFile(_ slices: [FrameSource], declared: [String: [Int]], directory: String, file: String,
                               compressionLevel: Int32, choice: CompressionChoice = CompressionChoice(.auto), threads: Int = 1,
                               dutyCycle: Double = 1) throws(CheckpointError) -> [CheckpointIndex.Tensor] {
        let path = directory + "/" + file
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw CheckpointFiles.ioError("create", path) }
        defer { close(descriptor) }
        var frames: [FrameSource] = []
        for slice in slices {
            var start = slice.elements.lowerBound
            while start < slice.elements.upperBound {
                let end = min(start + frameElements, slice.elements.upperBound)
                frames.append(FrameSource(name: slice.name, shape: slice.shape, elements: start..<end,
                                          bytes: slice.bytes + slice.dtype.byteCount(elements: start - slice.elements.lowerBound),
                                          dtype: slice.dtype))
                start = end
            }
        }
        // Pipelined: `threads` frames compress at once while the previous batch is written, in
        // order, by one serial writer.
        let writer = FrameFileWriter(descriptor: descriptor, path: path, choice: choice)
        let width = max(threads, 1)
        var batchStart = 0
        while batchStart < frames.count {
            let batchBegan = DispatchTime.now().uptimeNanoseconds
            let batch = Array(frames[batchStart..<min(batchStart + width, frames.count)])
            let compressed = CompressedBatch(count: batch.count)
            let compresses = choice.compressesNext(threads: width)
            DispatchQueue.concurrentPerform(iterations: batch.count) { index in
                let frame = batch[index]
                let raw = UnsafeRawBufferPointer(start: frame.bytes, count: frame.dtype.byteCount(elements: frame.elements.count))
                guard compresses else {
                    compressed.set(index, .success((Zstd.store(raw), CRC32C.checksum(raw))))
                    choice.recordStored()
                    return
                }
                do {
                    let began = monotonicSeconds()
                    let bytes = try Zstd.compress(raw, level: compressionLevel)
                    choice.recordCompression(bytesIn: raw.count, bytesOut: bytes.count, seconds: monotonicSeconds() - began)
                    compressed.set(index, .success((bytes, CRC32C.checksum(raw))))
                } catch {
                    compressed.set(index, .failure(CheckpointError(.io, "cannot compress tensor \(frame.name) for \(path): \(error)")))
                }
            }
            writer.append(batch, compressed, overlapping: width > 1)
            batchStart += batch.count
            if dutyCycle < 1 {
                // Writes are synchronous on one thread here, so the elapsed time is the work.
                let worked = Double(DispatchTime.now().uptimeNanoseconds - batchBegan) / 1e9
                Thread.sleep(forTimeInterval: worked * (1 / dutyCycle - 1))
            }
        }
        let tensors = try writer.finish()
        var byName = Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0) })
        for (name, shape) in declared where byName[name] == nil {
            byName[name] = CheckpointIndex.Tensor(name: name, dtype: .f32, shape: shape, slices: [])
        }
        return byName.values.sorted { $0.name < $1.name }
    }

    /// Finishes the checkpoint on every rank (collective); returns the step directory.
    ///
    /// `metadata` is the trainer's state as JSON (rank 0's copy is saved); `extraFiles` (name →
    /// bytes, rank 0's copy) are written into the step directory before it is committed, e.g.
    /// `model_config.json`. `keep` > 0 deletes
    /// committed checkpoints older than the newest `keep`, and uncommitted leftovers older than
    /// this one; `keep` ≤ 0 deletes nothing.
    @discardableResult
    public func commit(metadata: Data, extraFiles: [String: Data] = [:], keep: Int) throws -> String {
        precondition(!isCommitted, "checkpoint committed twice")
        isCommitted = true
        let records = try communicator.collectively { () throws -> [CheckpointIndex.Tensor] in
            if background != nil { finished.wait() } else { writeShard() }
            guard let shardResult else { preconditionFailure("shard not written") }
            return try shardResult.get()
        }
        // Gathering to rank 0 also orders: rank 0 hears from a rank only after its file is fsync'd.
        let encoded = String(decoding: try JSONEncoder().encode(records), as: UTF8.self)
        let gathered = try communicator.gather(encoded, root: 0)
        let (stepDirectory, directory, step, size) = (self.stepDirectory, self.directory, self.step, communicator.size)
        try communicator.collectively {
            guard communicator.rank == 0 else { return }
            let parts = try gathered.map { text in try JSONDecoder().decode([CheckpointIndex.Tensor].self, from: Data(text.utf8)) }
            let index = try CheckpointIndex.merging(parts, step: step, worldSize: size)
            try CheckpointFiles.writeDurably(try index.encoded(), to: stepDirectory + "/" + CheckpointFiles.indexName)
            try Self.finish(directory: directory, step: step, worldSize: size, metadata: metadata, extraFiles: extraFiles,
                            keep: keep)
        }
        return stepDirectory
    }

    /// The commit's last part, on one process after every shard file and `index.json` are
    /// durable: metadata and extra files, then `COMMITTED`, then `latest`, then pruning.
    static func finish(directory: String, step: Int, worldSize: Int, metadata: Data, extraFiles: [String: Data],
                       keep: Int) throws(CheckpointError) {
        let stepDirectory = directory + "/" + CheckpointFiles.stepDirectoryName(step)
        try CheckpointFiles.writeDurably(metadata, to: stepDirectory + "/" + CheckpointFiles.metadataName)
        for (name, data) in extraFiles.sorted(by: { $0.key < $1.key }) {
            try CheckpointFiles.writeDurably(data, to: stepDirectory + "/" + name)
        }
        try CheckpointFiles.syncDirectory(containing: stepDirectory + "/" + CheckpointFiles.indexName)
        try CheckpointFiles.replaceAtomically(stepDirectory + "/" + CheckpointFiles.commitMarkerName,
                                              with: Data("step \(step), \(worldSize) ranks\n".utf8))
        try CheckpointFiles.replaceAtomically(directory + "/" + CheckpointFiles.latestName,
                                              with: Data((CheckpointFiles.stepDirectoryName(step) + "\n").utf8))
        if keep > 0 { try prune(directory, newest: step, keep: keep) }
    }

    /// Writes a whole checkpoint from one process, as `ranks.count` ranks would have saved it
    /// (rank r's shard file holds `slicesOf(r)`, asked for one rank at a time so memory holds
    /// one rank's share): for tools that reshard, import or convert. `declared` names every
    /// tensor with its shape. Returns the step directory.
    @discardableResult
    public static func writeOffline(directory: String, step: Int, ranks: Int, declared: [String: [Int]],
                                    metadata: Data, extraFiles: [String: Data] = [:], compressionLevel: Int32 = 1,
                                    keep: Int = 0, slicesOf: (Int) throws -> [CheckpointSliceValues]) throws -> String {
        let stepDirectory = directory + "/" + CheckpointFiles.stepDirectoryName(step)
        if FileManager.default.fileExists(atPath: stepDirectory) { try CheckpointFiles.removeStepDirectory(stepDirectory) }
        do {
            try FileManager.default.createDirectory(atPath: stepDirectory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, "cannot create checkpoint directory \(stepDirectory): \(FileProblem.reason(error, path: stepDirectory)); choose another run.dir or output directory")
        }
        var parts: [[CheckpointIndex.Tensor]] = []
        for rank in 0..<ranks {
            let staging = CheckpointStaging()
            let slices = try slicesOf(rank)
            let offsets = slices.map { slice in slice.values.withUnsafeBufferPointer { staging.append($0) } }
            // Block-format slices' bytes are copied into buffers of their own for the write.
            var encoded: [UnsafeMutableRawBufferPointer] = []
            defer { for buffer in encoded { buffer.deallocate() } }
            let frames = zip(slices, offsets).map { slice, offset in
                guard slice.dtype.isQuantized else {
                    return FrameSource(name: slice.name, shape: slice.shape, elements: slice.elements, bytes: staging.pointer + offset)
                }
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(1, slice.encoded.count), alignment: 64)
                buffer.copyBytes(from: slice.encoded)
                encoded.append(buffer)
                return FrameSource(name: slice.name, shape: slice.shape, elements: slice.elements, bytes: buffer.baseAddress!,
                                   dtype: slice.dtype)
            }
            parts.append(try writeShardFile(frames, declared: declared, directory: stepDirectory, file: CheckpointFiles.shardName(rank: rank),
                                            compressionLevel: compressionLevel))
        }
        let index = try CheckpointIndex.merging(parts, step: step, worldSize: ranks)
        let encoded: Data
        do { encoded = try index.encoded() } catch { throw CheckpointError(.badIndex, "cannot encode the index: \(error)") }
        try CheckpointFiles.writeDurably(encoded, to: stepDirectory + "/" + CheckpointFiles.indexName)
        try finish(directory: directory, step: step, worldSize: ranks, metadata: metadata, extraFiles: extraFiles, keep: keep)
        return stepDirectory
    }

    /// Deletes committed checkpoints older than the newest `keep` up to `newest`, and
    /// uncommitted leftovers older than `newest`. Newer directories are left alone.
    static func prune(_ directory: String, newest: Int, keep: Int) throws(CheckpointError) {
        let candidates = CheckpointFiles.stepDirectories(in: directory).filter { $0.step <= newest }
        var committedSeen = 0
        for candidate in candidates.reversed() {
            if CheckpointFiles.isCommitted(candidate.path) {
                committedSeen += 1
                if committedSeen > keep { try CheckpointFiles.removeStepDirectory(candidate.path) }
            } else if candidate.step < newest {
                try CheckpointFiles.removeStepDirectory(candidate.path)
            }
        }
    }
}
