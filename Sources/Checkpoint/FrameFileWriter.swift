import CSupport
import Foundation

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

/// Appends compressed frames to a shard file in order on a serial queue, so writing one batch
/// overlaps compressing the next; starts writeback after each frame and fsyncs at `finish`.
/// Records each frame's place for the index; the first error stops further writes.
final class FrameFileWriter: @unchecked Sendable {
    private let descriptor: Int32
    private let path: String
    private let file: String
    private let queue = DispatchQueue(label: "checkpoint-frame-writer")
    private var offset = 0
    private var tensors: [String: CheckpointIndex.Tensor] = [:]
    private var order: [String] = []
    private var failure: CheckpointError?

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
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
                try CheckpointFiles.writeAll(descriptor, bytes, path: path)
                // Writeback starts now, overlapping the next frames' compression; the final
                // fsync then waits only for the tail.
                _ = meshlm_start_writeback(descriptor, Int64(offset), Int64(bytes.count))
                let record = CheckpointIndex.Slice(start: frame.elements.lowerBound, end: frame.elements.upperBound, file: file,
                                                   offset: offset, length: bytes.count,
                                                   bytes: frame.elements.count * CheckpointDType.f32.byteCount, crc32c: checksum)
                if tensors[frame.name] == nil { order.append(frame.name) }
                tensors[frame.name, default: CheckpointIndex.Tensor(name: frame.name, dtype: .f32, shape: frame.shape, slices: [])]
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
