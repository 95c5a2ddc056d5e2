/// One growing buffer the staged copies of a save go into, kept by the trainer across saves.
public final class CheckpointStaging: @unchecked Sendable {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private var capacity: Int
    /// Floats staged since the last `reset`.
    private(set) var count = 0

    public init() {
        capacity = 0
        pointer = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    }

    deinit { pointer.deallocate() }

    func reset() { count = 0 }

    /// Makes room for `floats` in one allocation (a trainer knows its share's size up front).
    /// `touching` writes every page of a new allocation now, so the kernel maps it here rather
    /// than in whatever later fills it (a training step, when the save copies lazily).
    public func reserve(_ floats: Int, touching: Bool = false) {
        guard floats > capacity else { return }
        let moved = UnsafeMutablePointer<Float>.allocate(capacity: floats)
        moved.update(from: pointer, count: count)
        if touching {
            let pageFloats = 4096 / MemoryLayout<Float>.stride
            var index = count
            while index < floats {
                moved[index] = 0
                index += pageFloats
            }
        }
        pointer.deallocate()
        pointer = moved
        capacity = floats
    }

    /// Sets aside `floats` (not yet written) and returns their offset; like `append`, it may
    /// move the buffer, so pointers into it are taken only once every slice is claimed.
    func claim(_ floats: Int) -> Int {
        if count + floats > capacity { reserve(max(count + floats, capacity * 2)) }
        count += floats
        return count - floats
    }

    /// Copies `values` in and returns their offset. Growing moves the buffer, so it happens only
    /// while staging (before any `FrameSource` points into it).
    func append(_ values: UnsafeBufferPointer<Float>) -> Int {
        let offset = claim(values.count)
        if let base = values.baseAddress { (pointer + offset).update(from: base, count: values.count) }
        return offset
    }
}
