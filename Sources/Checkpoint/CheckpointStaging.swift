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
    public func reserve(_ floats: Int) {
        guard floats > capacity else { return }
        let moved = UnsafeMutablePointer<Float>.allocate(capacity: floats)
        moved.update(from: pointer, count: count)
        pointer.deallocate()
        pointer = moved
        capacity = floats
    }

    /// Copies `values` in and returns their offset. Growing moves the buffer, so it happens only
    /// while staging (before any `FrameSource` points into it).
    func append(_ values: UnsafeBufferPointer<Float>) -> Int {
        if count + values.count > capacity {
            let grown = max(count + values.count, capacity * 2)
            let moved = UnsafeMutablePointer<Float>.allocate(capacity: grown)
            moved.update(from: pointer, count: count)
            pointer.deallocate()
            pointer = moved
            capacity = grown
        }
        if let base = values.baseAddress { (pointer + count).update(from: base, count: values.count) }
        count += values.count
        return count - values.count
    }
}
