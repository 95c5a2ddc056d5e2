/// Encodes bytes with one `BPEModel`, remembering the ids of every piece it has seen: text
/// repeats its words, so most pieces are looked up instead of merged. Not thread-safe; each
/// thread uses its own (`BPETokenizer` keeps one behind a lock).
public final class BPEEncoder {
    private let model: BPEModel
    private let preTokenizer = PreTokenizer()
    /// (left << 32 | right) → (rank << 32 | result id).
    private let mergeTable: [UInt64: UInt64]
    private let byteIds: [Int32]
    /// Whole-piece lookup for `ignoreMerges`.
    private let idOfBytes: [[UInt8]: Int32]

    /// Piece → ids, for pieces of up to 15 bytes packed into two words (no allocation per
    /// lookup); longer pieces are keyed by their bytes.
    private var shortCache: [PackedPiece: Range<Int>] = [:]
    private var longCache: [[UInt8]: Range<Int>] = [:]
    private var cachedIds: [Int32] = []
    /// Cached ids at which the cache is emptied (bounds memory on endless distinct pieces).
    private let cacheLimit = 1 << 24
    private var symbols: [Int32] = []
    private var ranks: [UInt32] = []

    /// Pieces of at least this many bytes merge with a heap over a linked list (n log n), not
    /// by rescanning (n²): a megabyte of letters without a space (base64, minified code) must
    /// not stall a run. Both give the same ids (tested with this set to 2).
    let heapMergeLength: Int

    public init(model: BPEModel, heapMergeLength: Int = 128) {
        self.model = model
        self.heapMergeLength = max(2, heapMergeLength)
        var table = [UInt64: UInt64](minimumCapacity: model.merges.count)
        for (rank, merge) in model.merges.enumerated() {
            let key = UInt64(UInt32(bitPattern: merge.left)) << 32 | UInt64(UInt32(bitPattern: merge.right))
            // A pair listed twice keeps its first (lowest) rank, as Hugging Face does.
            if table[key] == nil { table[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merge.result)) }
        }
        mergeTable = table
        var bytes = [Int32](repeating: -1, count: 256)
        var lookup = [[UInt8]: Int32]()
        let specialIds = Set(model.specialTokens.map(\.id))
        for (id, token) in model.tokens.enumerated() where !specialIds.contains(Int32(id)) {
            if token.count == 1, bytes[Int(token[0])] < 0 { bytes[Int(token[0])] = Int32(id) }
            if model.ignoreMerges, lookup[token] == nil { lookup[token] = Int32(id) }
        }
        byteIds = bytes
        idOfBytes = lookup
    }

    /// Appends the ids of `bytes` (special token texts are ordinary text here) to `ids`.
    public func encode(_ bytes: UnsafeBufferPointer<UInt8>, into ids: inout [Int32]) {
        preTokenizer.split(bytes) { range in
            encodePiece(UnsafeBufferPointer(rebasing: bytes[range]), into: &ids)
        }
    }

    private func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, into ids: inout [Int32]) {
        if piece.count == 1 {
            ids.append(byteIds[Int(piece[0])])
            return
        }
        if let key = PackedPiece(piece) {
            if let range = shortCache[key] {
                ids.append(contentsOf: cachedIds[range])
                return
            }
            let range = merge(piece)
            shortCache[key] = range
            ids.append(contentsOf: cachedIds[range])
        } else {
            let key = Array(piece)
            if let range = longCache[key] {
                ids.append(contentsOf: cachedIds[range])
                return
            }
            let range = merge(piece)
            longCache[key] = range
            ids.append(contentsOf: cachedIds[range])
        }
        if cachedIds.count > cacheLimit {
            shortCache.removeAll(keepingCapacity: true)
            longCache.removeAll(keepingCapacity: true)
            cachedIds.removeAll(keepingCapacity: true)
        }
    }

    /// Merges one piece: repeatedly the adjacent pair of lowest rank (the leftmost of equal
    /// ones), as Hugging Face and tiktoken do. Returns where its ids went in `cachedIds`.
    private func merge(_ piece: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        let start = cachedIds.count
        if model.ignoreMerges, let id = idOfBytes[Array(piece)] {
            cachedIds.append(id)
            return start..<start + 1
        }
        symbols.removeAll(keepingCapacity: true)
        for byte in piece { symbols.append(byteIds[Int(byte)]) }
        if symbols.count >= heapMergeLength {
            mergeWithHeap()
            cachedIds.append(contentsOf: symbols)
            return start..<cachedIds.count
        }
        ranks.removeAll(keepingCapacity: true)
        for index in 0..<symbols.count - 1 { ranks.append(rank(symbols[index], symbols[index + 1]).rank) }
        while symbols.count > 1 {
            var best = UInt32.max
            var bestIndex = -1
            for index in 0..<ranks.count where ranks[index] < best {
                best = ranks[index]
                bestIndex = index
            }
            guard bestIndex >= 0 else { break }
            symbols[bestIndex] = rank(symbols[bestIndex], symbols[bestIndex + 1]).result
            symbols.remove(at: bestIndex + 1)
            ranks.remove(at: bestIndex)
            if bestIndex > 0 { ranks[bestIndex - 1] = rank(symbols[bestIndex - 1], symbols[bestIndex]).rank }
            if bestIndex < ranks.count { ranks[bestIndex] = rank(symbols[bestIndex], symbols[bestIndex + 1]).rank }
        }
        cachedIds.append(contentsOf: symbols)
        return start..<cachedIds.count
    }

    @inline(__always)
    private func rank(_ left: Int32, _ right: Int32) -> (rank: UInt32, result: Int32) {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        guard let value = mergeTable[key] else { return (.max, -1) }
        return (UInt32(truncatingIfNeeded: value >> 32), Int32(truncatingIfNeeded: value))
    }

    /// The same merges as the rescanning loop: the pair of lowest rank first, the leftmost of
    /// equal ones (heap order (rank, position); positions keep the text order). An entry is
    /// stale when its left symbol is gone or its pair changed; it is skipped then.
    private func mergeWithHeap() {
        let count = symbols.count
        var next = Array(1...count)
        next[count - 1] = -1
        var previous = Array(-1..<(count - 1))
        var alive = [Bool](repeating: true, count: count)
        var heap = MergeHeap()
        for index in 0..<count - 1 {
            let found = rank(symbols[index], symbols[index + 1])
            if found.rank != .max { heap.push(rank: found.rank, position: index) }
        }
        while let (entryRank, position) = heap.pop() {
            let right = next[position]
            guard alive[position], right >= 0 else { continue }
            let found = rank(symbols[position], symbols[right])
            guard found.rank == entryRank else { continue }
            symbols[position] = found.result
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 { previous[next[right]] = position }
            if previous[position] >= 0 {
                let left = previous[position]
                let pair = rank(symbols[left], symbols[position])
                if pair.rank != .max { heap.push(rank: pair.rank, position: left) }
            }
            if next[position] >= 0 {
                let pair = rank(symbols[position], symbols[next[position]])
                if pair.rank != .max { heap.push(rank: pair.rank, position: position) }
            }
        }
        var merged = [Int32]()
        merged.reserveCapacity(count)
        var index = 0
        while index >= 0 {
            merged.append(symbols[index])
            index = next[index]
        }
        symbols = merged
    }
}
