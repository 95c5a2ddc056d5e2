import DataPipeline
import Model
import Runtime
import Tensors

/// Where packed rows read their samples back from: in memory (`[TokenizedSample]`, small sets
/// read from JSONL) or a tokenized sample directory (`SFTShardSet`, read per batch).
public protocol SFTSampleSource {
    var sampleCount: Int { get }
    /// The token count of sample `index` (what packing needs; cheap).
    func length(of index: Int) -> Int
    /// Sample `index`'s ids and mask (may read a file).
    func sample(_ index: Int) throws -> TokenizedSample
}

extension Array: SFTSampleSource where Element == TokenizedSample {
    public var sampleCount: Int { count }
    public func length(of index: Int) -> Int { self[index].ids.count }
    public func sample(_ index: Int) -> TokenizedSample { self[index] }
}

extension SFTShardSet: SFTSampleSource {}

/// Tokenized SFT samples packed into rows of `seq_len` tokens, by minimum slack (each row filled
/// as full as the samples left allow: `MinimumSlackPacking`) or best fit decreasing (longest
/// sample first, each into the row whose free room it fills best). Each sample keeps its own positions (0, 1, …), so with document masking a token attends only
/// to its own sample, and a packed row's loss and gradients are those of its samples apart.
/// The rest of a row is padding that predicts nothing.
///
/// Packing needs only the samples' lengths; a row's ids are read from `samples` when it is
/// built, so a sample directory of any size packs in a few tens of bytes per sample (offsets,
/// lengths, the rows' indices), never its ids.
public struct SFTPackedRows: PackedRowSource {
    public let sequenceLength: Int
    /// Each row's samples, as indices into `samples`.
    public let rows: [[Int]]
    /// The samples kept, each at most `sequenceLength` tokens.
    public let samples: any SFTSampleSource
    /// Samples left out: too long (`drop`), or nothing to learn (after cutting, if cut).
    public let droppedCount: Int
    /// Samples cut to `sequenceLength` (`keep_start`/`keep_end`) and kept.
    public let truncatedCount: Int
    /// Supervised tokens of the kept samples.
    public let supervisedCount: Int
    /// Tokens of the kept samples.
    public let tokenCount: Int
    /// The id padding is written with (it is never a target).
    public let paddingId: Int32

    /// Fits `samples` to rows (`TokenizedSample.fitted`) and packs the ones kept.
    public init(_ samples: [TokenizedSample], sequenceLength: Int, truncation: SFTTruncation, paddingId: Int32,
                packing: SFTPacking = .auto) {
        var kept: [TokenizedSample] = []
        var dropped = 0, truncated = 0
        for sample in samples {
            switch sample.fitted(to: sequenceLength, truncation: truncation) {
            case .kept(let sample): kept.append(sample)
            case .truncated(let sample):
                kept.append(sample)
                truncated += 1
            case .dropped: dropped += 1
            }
        }
        self.init(fitted: kept, sequenceLength: sequenceLength, droppedCount: dropped, truncatedCount: truncated,
                  supervisedCount: kept.reduce(0) { $0 + $1.supervisedCount }, paddingId: paddingId, packing: packing)
    }

    /// Packs samples already fitted to `sequenceLength` (a sample directory's, whose manifest
    /// gives the counts).
    public init(fitted samples: any SFTSampleSource, sequenceLength: Int, droppedCount: Int, truncatedCount: Int,
                supervisedCount: Int, paddingId: Int32, packing: SFTPacking = .auto) {
        let lengths = (0..<samples.sampleCount).map { samples.length(of: $0) }
        precondition(lengths.allSatisfy { $0 <= sequenceLength }, "fitted samples fit a row")
        self.sequenceLength = sequenceLength
        self.rows = packing.rows(lengths: lengths, sequenceLength: sequenceLength)
        self.samples = samples
        self.droppedCount = droppedCount
        self.truncatedCount = truncatedCount
        self.supervisedCount = supervisedCount
        self.tokenCount = lengths.reduce(0, +)
        self.paddingId = paddingId
    }

    /// Real tokens over the rows' slots.
    public var efficiency: Double {
        rows.isEmpty ? 0 : Double(tokenCount) / Double(rows.count * sequenceLength)
    }

    /// Row `index` as model inputs: tokens, targets (the next token where it is supervised, else
    /// −100) and positions restarting at each sample (padding is its own span).
    public func packedRow(_ index: Int) throws -> PackedRow {
        var row = PackedRow(tokens: [], targets: [], positions: [])
        for sampleIndex in rows[index] { append(try samples.sample(sampleIndex), to: &row) }
        pad(&row, to: sequenceLength, with: paddingId)
        return row
    }

    public var rowCount: Int { rows.count }

    /// Best fit decreasing over `lengths` (each 1 ... `sequenceLength`): samples longest first
    /// (the earlier of equal ones first), each into the row with the least free room that holds
    /// it, the lowest-numbered such row on a tie, else a new row. Returns each row's sample indices.
    ///
    /// Rows are kept by free room (a min-heap of row numbers per amount), and the least amount ≥ a
    /// length that has rows is found in a tree over the amounts: O(n log n) for n samples, not
    /// the O(n × rows) of scanning every row (`naiveBestFitDecreasing` in the tests).
    public static func bestFitDecreasing(lengths: [Int], sequenceLength: Int) -> [[Int]] {
        let order = lengths.indices.sorted { (lengths[$0], $1) > (lengths[$1], $0) }
        var rows: [[Int]] = []
        var rowsByFreeRoom = [[Int]](repeating: [], count: sequenceLength + 1)
        var occupied = FreeRoomTree(amounts: sequenceLength + 1)
        func file(_ row: Int, freeRoom: Int) {
            MinHeap.push(row, into: &rowsByFreeRoom[freeRoom])
            if rowsByFreeRoom[freeRoom].count == 1 { occupied.mark(freeRoom, occupied: true) }
        }
        for index in order {
            let length = lengths[index]
            precondition(length >= 1 && length <= sequenceLength, "sample lengths lie in 1...sequenceLength")
            if let room = occupied.first(atLeast: length) {
                let row = MinHeap.pop(&rowsByFreeRoom[room])
                if rowsByFreeRoom[room].isEmpty { occupied.mark(room, occupied: false) }
                rows[row].append(index)
                file(row, freeRoom: room - length)
            } else {
                rows.append([index])
                file(rows.count - 1, freeRoom: sequenceLength - length)
            }
        }
        return rows
    }
}

/// Which free-room amounts 0 ... n − 1 have rows: a complete binary tree of occupied counts, to
/// find the least occupied amount ≥ a length in O(log n).
private struct FreeRoomTree {
    private let leaves: Int
    private var counts: [Int32]

    init(amounts: Int) {
        var leaves = 1
        while leaves < amounts { leaves *= 2 }
        self.leaves = leaves
        counts = [Int32](repeating: 0, count: 2 * leaves)
    }

    mutating func mark(_ amount: Int, occupied: Bool) {
        var node = amount + leaves
        let delta: Int32 = occupied ? 1 : -1
        while node >= 1 {
            counts[node] += delta
            node /= 2
        }
    }

    func first(atLeast amount: Int) -> Int? {
        var node = amount + leaves
        if counts[node] > 0 { return amount }
        // Climb until a right sibling has an occupied amount, then take its leftmost one.
        while node > 1 {
            if node % 2 == 0, counts[node + 1] > 0 {
                node += 1
                while node < leaves { node = counts[2 * node] > 0 ? 2 * node : 2 * node + 1 }
                return node - leaves
            }
            node /= 2
        }
        return nil
    }
}

/// A binary min-heap of row numbers in a plain array.
private enum MinHeap {
    static func push(_ value: Int, into heap: inout [Int]) {
        heap.append(value)
        var child = heap.count - 1
        while child > 0, heap[(child - 1) / 2] > heap[child] {
            heap.swapAt(child, (child - 1) / 2)
            child = (child - 1) / 2
        }
    }

    static func pop(_ heap: inout [Int]) -> Int {
        let top = heap[0]
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count, heap[left] < heap[smallest] { smallest = left }
            if right < heap.count, heap[right] < heap[smallest] { smallest = right }
            if smallest == parent { return top }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
