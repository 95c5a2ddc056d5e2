/// A max-heap of (count, pair) for BPE training. Order: higher count first; equal counts by
/// the smaller pair, comparing left id then right id (the pair key `left << 32 | right`). This
/// is the documented, deterministic tie-break: the earlier-created tokens merge first.
struct PairHeap {
    struct Entry {
        var count: Int
        var pair: UInt64

        @inline(__always)
        func precedes(_ other: Entry) -> Bool {
            count != other.count ? count > other.count : pair < other.pair
        }
    }

    private var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].precedes(entries[parent]) else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = entries.first else { return nil }
        let last = entries.removeLast()
        guard !entries.isEmpty else { return top }
        entries[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var best = parent
            if left < entries.count, entries[left].precedes(entries[best]) { best = left }
            if right < entries.count, entries[right].precedes(entries[best]) { best = right }
            guard best != parent else { break }
            entries.swapAt(parent, best)
            parent = best
        }
        return top
    }
}
