import Foundation

/// One entry of the bucket space: a bucket (band key and band number, or an exact-text hash)
/// and a document in it.
struct BucketEntry: Comparable {
    var key: UInt64
    /// The band number, or `exactTag | …` for an exact-text bucket.
    var tag: UInt64
    var ordinal: UInt64

    static let exactTag: UInt64 = 1 << 63

    static func < (left: BucketEntry, right: BucketEntry) -> Bool {
        if left.key != right.key { return left.key < right.key }
        if left.tag != right.tag { return left.tag < right.tag }
        return left.ordinal < right.ordinal
    }
}

/// Collects this rank's slice of the bucket space and yields each bucket's documents in order,
/// in bounded memory: when the entries held pass the budget they are sorted and written to a
/// run file (24 bytes an entry), and the runs are merged at the end (an external merge sort).
final class BucketSorter {
    private let budgetEntries: Int
    private let spillDirectory: String
    private var entries = [BucketEntry]()
    private var runs = [String]()
    /// Entries received in total.
    private(set) var entryCount = 0
    var spilledRuns: Int { runs.count }

    init(budgetBytes: Int, spillDirectory: String) {
        budgetEntries = max(1024, budgetBytes / MemoryLayout<BucketEntry>.stride)
        self.spillDirectory = spillDirectory
    }

    deinit {
        for run in runs { unlink(run) }
    }

    func append(_ entry: BucketEntry) throws(DataError) {
        entries.append(entry)
        entryCount += 1
        if entries.count >= budgetEntries { try spill() }
    }

    private func spill() throws(DataError) {
        entries.sort()
        let path = (spillDirectory as NSString).appendingPathComponent("run-\(runs.count).bin")
        let writer = try AtomicFileWriter(path: path)
        try writer.write(entries.withUnsafeBytes { Array($0) })
        try writer.finish()
        runs.append(path)
        entries.removeAll(keepingCapacity: true)
    }

    /// Calls `body(tag, ordinals)` once per bucket with two or more documents, in bucket order,
    /// the ordinals ascending.
    func forEachSharedBucket(_ body: (UInt64, [UInt64]) throws(DataError) -> Void) throws(DataError) {
        var currentKey: UInt64 = 0, currentTag: UInt64 = 0
        var members = [UInt64]()
        func emit(_ entry: BucketEntry) throws(DataError) {
            if !members.isEmpty && (entry.key != currentKey || entry.tag != currentTag) {
                if members.count > 1 { try body(currentTag, members) }
                members.removeAll(keepingCapacity: true)
            }
            currentKey = entry.key
            currentTag = entry.tag
            // The same document twice in a bucket cannot happen (one entry per band per document).
            members.append(entry.ordinal)
        }
        if runs.isEmpty {
            entries.sort()
            for entry in entries { try emit(entry) }
        } else {
            if !entries.isEmpty { try spill() }
            entries = []
            let readers = try runs.map { (path) throws(DataError) in try RunReader(path: path) }
            var heap = [(entry: BucketEntry, run: Int)]()
            for (index, reader) in readers.enumerated() {
                if let first = try reader.next() { heap.append((first, index)) }
            }
            heap.sort { $0.entry < $1.entry }
            // A sorted array as the priority queue: runs are few (memory / budget), so
            // re-inserting by binary search is cheap next to the I/O.
            while !heap.isEmpty {
                let (entry, run) = heap.removeFirst()
                try emit(entry)
                if let next = try readers[run].next() {
                    var low = 0, high = heap.count
                    while low < high {
                        let middle = (low + high) / 2
                        if heap[middle].entry < next { low = middle + 1 } else { high = middle }
                    }
                    heap.insert((next, run), at: low)
                }
            }
        }
        if members.count > 1 { try body(currentTag, members) }
    }
}

/// Reads a sorted run file back in 1 MB pieces.
private final class RunReader {
    private let descriptor: Int32
    private let path: String
    private var buffer = [BucketEntry](repeating: BucketEntry(key: 0, tag: 0, ordinal: 0), count: 1 << 16)
    private var position = 0
    private var count = 0

    init(path: String) throws(DataError) {
        self.path = path
        descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { throw DataError("\(path): cannot be opened: \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    func next() throws(DataError) -> BucketEntry? {
        if position == count {
            let bytes = buffer.withUnsafeMutableBytes { raw in Foundation.read(descriptor, raw.baseAddress, raw.count) }
            guard bytes >= 0 else { throw DataError("\(path): read failed: \(String(cString: strerror(errno)))") }
            guard bytes % MemoryLayout<BucketEntry>.stride == 0 else { throw DataError("\(path): truncated run file") }
            count = bytes / MemoryLayout<BucketEntry>.stride
            position = 0
            if count == 0 { return nil }
        }
        position += 1
        return buffer[position - 1]
    }
}
