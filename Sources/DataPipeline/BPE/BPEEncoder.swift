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

    public init(model: BPEModel) {
        self.model = model
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
}
