import Runtime

/// How often each pre-tokenized piece occurs in the training text: the input of BPE training.
/// Counts from several ranks merge into the same totals whatever the split (`merged(across:)`).
public final class PieceCounts {
    private var short: [PackedPiece: Int] = [:]
    private var long: [[UInt8]: Int] = [:]
    private let preTokenizer = PreTokenizer()
    /// Bytes of text counted (for progress lines).
    public private(set) var bytesCounted = 0

    public init() {}

    /// Counts the pieces of one document.
    public func add(document text: String) {
        var text = text
        text.withUTF8 { add(bytes: $0) }
    }

    public func add(bytes: UnsafeBufferPointer<UInt8>) {
        bytesCounted += bytes.count
        preTokenizer.split(bytes) { range in
            let piece = UnsafeBufferPointer(rebasing: bytes[range])
            if let key = PackedPiece(piece) {
                short[key, default: 0] += 1
            } else {
                long[Array(piece), default: 0] += 1
            }
        }
    }

    public func add(piece: [UInt8], count: Int) {
        let packed = piece.withUnsafeBufferPointer { PackedPiece($0) }
        if let packed { short[packed, default: 0] += count } else { long[piece, default: 0] += count }
    }

    /// Distinct pieces.
    public var count: Int { short.count + long.count }

    /// Every piece and its count, sorted by bytes (the same order on every rank and run).
    public func sortedEntries() -> [(piece: [UInt8], count: Int)] {
        var entries = short.map { (piece: $0.key.bytes, count: $0.value) }
        entries += long.map { (piece: $0.key, count: $0.value) }
        entries.sort { $0.piece.lexicographicallyPrecedes($1.piece) }
        return entries
    }

    /// Serialized as length (4 bytes), bytes, count (8 bytes), little-endian, per piece.
    func serialized() -> [UInt8] {
        var out = [UInt8]()
        for (piece, count) in sortedEntries() {
            withUnsafeBytes(of: UInt32(piece.count).littleEndian) { out += $0 }
            out += piece
            withUnsafeBytes(of: UInt64(count).littleEndian) { out += $0 }
        }
        return out
    }

    func addSerialized(_ bytes: [UInt8]) {
        var position = 0
        func integer(_ width: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in 0..<width { value |= UInt64(bytes[position + index]) << (8 * index) }
            position += width
            return value
        }
        while position < bytes.count {
            let length = Int(integer(4))
            let piece = Array(bytes[position..<position + length])
            position += length
            add(piece: piece, count: Int(integer(8)))
        }
    }

    /// The sum of every rank's counts, on every rank (an all-gather of the serialized counts).
    public func merged(across world: Communicator) throws(MPIError) -> PieceCounts {
        guard world.size > 1 else { return self }
        let all = try world.allgather(serialized())
        let total = PieceCounts()
        for part in all { total.addSerialized(part) }
        total.bytesCounted = Int(try world.allreduce(Int64(bytesCounted), .sum))
        return total
    }
}
