import CSupport
import Foundation
import Runtime

/// The results of compressing one batch of frames on several threads: each slot written once,
/// by its own thread.
final class CompressedBatch: @unchecked Sendable {
    private var results: [Result<(frame: [UInt8], checksum: UInt32), CheckpointError>?]
    private let lock = NSLock()

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ result: Result<(frame: [UInt8], checksum: UInt32), CheckpointError>) {
        lock.lock()
        results[index] = result
        lock.unlock()
    }

    var all: [Result<(frame: [UInt8], checksum: UInt32), CheckpointError>] {
        lock.lock()
        defer { lock.unlock() }
        return results.map { $0 ?? .failure(CheckpointError(.io, "a frame was not compressed")) }
    }
}

/// How the frames of a checkpoint's shard files are encoded (`checkpoint.compression`).
public enum CheckpointCompression: String, ConfigChoice {
    /// Compress while compression keeps up with the disk, store frames raw when it does not:
    /// chosen frame by frame from the rates the save measures (`CompressionChoice`).
    case auto
    /// Every frame compressed at `checkpoint.zstd_level`.
    case zstd
    /// Every frame stored (a zstd frame of raw blocks: no compression, no compression cost).
    case none
}

/// Chooses, batch by batch, whether a save's next frames are compressed or stored, from what
/// the save measured: compression's rate on one thread (C, bytes in per second) and its ratio
/// (r), both over the most recent compressed frames, and the disk's rate (D, bytes written per
/// second of the writer over the whole save; the writer calls `fdatasync` every
/// `FrameFileWriter.writebackWindow` bytes, so its time is the disk's). Compressed frames save at
/// min(threads·C, r·D), stored ones at D: compress while threads·C > D and r > 1.01.
///
/// C and r depend on the data — a checkpoint's weights hardly compress at all (r ≈ 1.00 for
/// the 124M model) while its optimizer moments do (r ≈ 1.2–1.3) — so while frames are stored,
/// every `probeInterval`-th batch is compressed anyway to measure the frames at hand: a save
/// that starts with incompressible tensors turns to compression when it reaches compressible
/// ones. (Deciding on the first frames alone stored 99 % of a 124M checkpoint raw on an AVX2
/// machine where compressing it all was faster.)
final class CompressionChoice: @unchecked Sendable {
    let mode: CheckpointCompression
    /// While storing, every this-many-th batch is compressed to keep C and r current.
    static let probeInterval = 4
    /// The weight of the frames before the newest in C and r (a frame's own weight is 1).
    static let decay = 0.5
    private let lock = NSLock()
    private var recentIn = 0.0, recentOut = 0.0, recentSeconds = 0.0
    private var writtenBytes = 0, writeSeconds = 0.0
    private var compressedFrames = 0, storedFrames = 0
    private var storedBatches = 0

    init(_ mode: CheckpointCompression) { self.mode = mode }

    /// Whether the next batch, compressed on `threads` threads, should be compressed.
    func compressesNext(threads: Int) -> Bool {
        switch mode {
        case .zstd: return true
        case .none: return false
        case .auto:
            lock.lock()
            defer { lock.unlock() }
            // Until both sides are measured, compress (the first frames measure compression).
            guard recentSeconds > 0, writeSeconds > 0, recentOut > 0 else { return true }
            let rate = Double(threads) * recentIn / recentSeconds
            let disk = Double(writtenBytes) / writeSeconds
            if rate > disk && recentIn > 1.01 * recentOut {
                storedBatches = 0
                return true
            }
            storedBatches += 1
            if storedBatches == Self.probeInterval {
                storedBatches = 0
                return true
            }
            return false
        }
    }

    func recordCompression(bytesIn: Int, bytesOut: Int, seconds: Double) {
        lock.lock()
        recentIn = Self.decay * recentIn + Double(bytesIn)
        recentOut = Self.decay * recentOut + Double(bytesOut)
        recentSeconds = Self.decay * recentSeconds + seconds
        compressedFrames += 1
        lock.unlock()
    }

    func recordStored() {
        lock.lock()
        storedFrames += 1
        lock.unlock()
    }

    func recordWrite(bytes: Int, seconds: Double) {
        lock.lock()
        writtenBytes += bytes
        writeSeconds += seconds
        lock.unlock()
    }

    /// Frames compressed and stored so far (`meshlm bench checkpoint` reports them).
    var counts: (compressed: Int, stored: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (compressedFrames, storedFrames)
    }
}

/// Appends compressed frames to a shard file in order on a serial queue, so writing one batch
/// overlaps compressing the next; starts writeback after each frame and calls `fdatasync` every
/// `writebackWindow` bytes (so the dirty data in flight stays bounded and the writer's time is
/// the disk's), and fsyncs at `finish`. Records each frame's place for the index; the first
/// error stops further writes.
final class FrameFileWriter: @unchecked Sendable {
    /// Bytes written since the last `fdatasync`, at most (plus one frame).
    static let writebackWindow = 64 << 20
    private var durableOffset = 0
    private let choice: CompressionChoice?
    private let descriptor: Int32
    private let path: String
    private let file: String
    private let queue = DispatchQueue(label: "checkpoint-frame-writer")
    private var offset = 0
    private var tensors: [String: CheckpointIndex.Tensor] = [:]
    private var order: [String] = []
    private var failure: CheckpointError?

    init(descriptor: Int32, path: String, choice: CompressionChoice? = nil) {
        self.descriptor = descriptor
        self.path = path
        self.choice = choice
        self.file = (path as NSString).lastPathComponent
    }

    /// Queues the batch's writes; with `overlapping` false they run now, on the calling thread
    /// (a background save on one niced thread keeps its writes at that priority too).
    func append(_ frames: [CheckpointWriter.FrameSource], _ compressed: CompressedBatch, overlapping: Bool = true) {
        if overlapping { queue.async { [self] in write(frames, compressed) } } else { queue.sync { write(frames, compressed) } }
    }

    private func write(_ frames: [CheckpointWriter.FrameSource], _ compressed: CompressedBatch) {
        guard failure == nil else { return }
        for (frame, result) in zip(frames, compressed.all) {
            do throws(CheckpointError) {
                let (bytes, checksum) = try result.get()
                let began = monotonicSeconds()
                try CheckpointFiles.writeAll(descriptor, bytes, path: path)
                // Writeback starts now, overlapping the next frames' compression; the final
                // fsync then waits only for the tail.
                _ = meshlm_start_writeback(descriptor, Int64(offset), Int64(bytes.count))
                let end = offset + bytes.count
                if end - durableOffset > Self.writebackWindow {
                    // fdatasync, not a wait for writeback: a VM's disk may complete writes into
                    // the host's cache at once and pay only at the flush.
                    guard fdatasync(descriptor) == 0 else { throw CheckpointFiles.ioError("fdatasync", path) }
                    durableOffset = end
                }
                choice?.recordWrite(bytes: bytes.count, seconds: monotonicSeconds() - began)
                let record = CheckpointIndex.Slice(start: frame.elements.lowerBound, end: frame.elements.upperBound, file: file,
                                                   offset: offset, length: bytes.count,
                                                   bytes: frame.dtype.byteCount(elements: frame.elements.count), crc32c: checksum)
                if tensors[frame.name] == nil { order.append(frame.name) }
                tensors[frame.name, default: CheckpointIndex.Tensor(name: frame.name, dtype: frame.dtype, shape: frame.shape, slices: [])]
                    .slices.append(record)
                offset += bytes.count
            } catch {
                failure = error
                return
            }
        }
    }

    /// Waits for every write, fsyncs, and returns the tensors in first-written order.
    func finish() throws(CheckpointError) -> [CheckpointIndex.Tensor] {
        let (failure, tensors, order) = queue.sync { (self.failure, self.tensors, self.order) }
        if let failure { throw failure }
        guard fsync(descriptor) == 0 else { throw CheckpointFiles.ioError("fsync", path) }
        return order.compactMap { tensors[$0] }
    }
}
