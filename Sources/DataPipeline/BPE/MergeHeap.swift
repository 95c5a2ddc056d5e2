/// A min-heap of (rank, position) for long pieces, packed into one word so that the order is
/// one integer comparison: rank in the high half, position in the low.
struct MergeHeap {
    private var entries: [UInt64] = []

    mutating func push(rank: UInt32, position: Int) {
        entries.append(UInt64(rank) << 32 | UInt64(UInt32(truncatingIfNeeded: position)))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child] < entries[parent] else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (rank: UInt32, position: Int)? {
        guard let top = entries.first else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                var best = parent
                if left < entries.count, entries[left] < entries[best] { best = left }
                if left + 1 < entries.count, entries[left + 1] < entries[best] { best = left + 1 }
                guard best != parent else { break }
                entries.swapAt(parent, best)
                parent = best
            }
        }
        return (UInt32(truncatingIfNeeded: top >> 32), Int(UInt32(truncatingIfNeeded: top)))
    }
}
