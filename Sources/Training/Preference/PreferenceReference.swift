import DataPipeline
import Foundation
import Runtime

/// The reference model's log-probabilities of every pair's answers, computed once before
/// training by a forward-only pass over the data set (DPO's reference is frozen, so its figures
/// never change) and cached beside the run: a restart, a resume or a later run on the same data
/// and reference reads them back instead of running the reference again.
///
/// The pass is data parallel (each rank scores its share of every chunk of rows, then one
/// all-reduce), runs on the trainer's own mesh (TP, PP, ZeRO-3 shards as training), and is
/// resumable: after every few chunks the figures so far are written with a flag per row done,
/// so a killed pass continues where it stopped, on any layout.
///
/// The cache (`RUN/reference/NAME.logps`) is one JSON header line — the key, pairs, rows — then
/// a byte per row (1 = done) and two float64s per pair (chosen, rejected), little-endian. The key is a SHA-256 of
/// the reference's checkpoint index, `seq_len`, every pair's tokens and masks and the rows' layout, so any change
/// to the data, the tokenizer, the template or the reference starts the pass afresh.
public struct PreferenceReference {
    /// The cache file.
    public let path: String
    /// What the cached figures were computed from.
    public let key: String

    /// - Parameter identity: what names the reference model (its checkpoint's index.json bytes).
    public init(directory: String, name: String, rows: PreferencePackedRows, identity: Data) {
        path = directory + "/" + name + ".logps"
        var hash = SHA256()
        hash.update(Array("meshlm reference logps v1 seq_len \(rows.sequenceLength) pairs \(rows.pairs.count)\n".utf8))
        hash.update(Array(identity))
        for pair in rows.pairs {
            for sample in [pair.chosen, pair.rejected] {
                sample.ids.withUnsafeBytes { hash.update($0) }
                hash.update(sample.supervised.map { $0 ? 1 : 0 })
            }
        }
        // The rows' layout too: the done-flags are per row.
        for row in rows.rows {
            let layout = row.map { unit in "\(rows.units[unit].pair):\(rows.units[unit].roles.count)" }.joined(separator: ",")
            hash.update(Array((layout + ";").utf8))
        }
        key = hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// What the pass found or did, for the log.
    public struct Outcome: Sendable {
        public var references: [Double]
        /// Rows read from the cache rather than scored.
        public var cachedRows: Int
        public var scoredRows: Int
        public var seconds: Double
    }

    /// Fills in every pair's reference log-probabilities (2p chosen, 2p + 1 rejected): from the
    /// cache where it holds them, else scored with the model `makeModel` gives (the reference,
    /// forward only; asked for only when some row is not cached, so a complete cache loads no
    /// model), `rowsPerBatch` rows per micro-batch and `batchesPerCall` micro-batches per call,
    /// the rows taken in `order` (every row index once). Collective over the whole mesh; every
    /// rank returns the same figures.
    public func compute(_ rows: PreferencePackedRows, order: [Int], model makeModel: () throws -> ParallelModel, rowsPerBatch: Int, batchesPerCall: Int,
                        dataCommunicator: Communicator, world: Communicator, saveEvery: Int = 8) throws -> Outcome {
        precondition(order.count == rows.rows.count, "the order lists \(order.count) of \(rows.rows.count) rows")
        let start = monotonicSeconds()
        var (values, done) = try world.collectively { try load(rows) }
        // A row counts as cached only where every rank read it so: all ranks then make the same calls.
        try world.allreduce(&done, .min)
        var model: ParallelModel?
        let cached = done.reduce(0) { $0 + Int($1) }
        let pending = order.filter { done[$0] == 0 }
        let degree = dataCommunicator.size, rank = dataCommunicator.rank
        let rowsPerCall = rowsPerBatch * batchesPerCall
        let chunk = rowsPerCall * degree
        var chunks = 0
        // Figures scored since the last combine, zero elsewhere: each pair is scored by one rank.
        var fresh = [Double](repeating: 0, count: values.count)
        var freshDone = [UInt8](repeating: 0, count: done.count)
        // Every data-parallel rank makes the same calls (ZeRO-3 gathers parameters in them);
        // a short last chunk repeats a row whose figures are then ignored.
        for first in stride(from: 0, to: pending.count, by: chunk) {
            let mine = (0..<rowsPerCall).map { first + rank * rowsPerCall + $0 }
            let indices = mine.map { $0 < pending.count ? pending[$0] : pending[0] }
            let batches = try stride(from: 0, to: rowsPerCall, by: rowsPerBatch).map { offset in
                try PackedBatches.microBatch(rows, indices: Array(indices[offset..<offset + rowsPerBatch]), firstRow: 0)
            }
            let scorer = try model ?? makeModel()
            model = scorer
            for (batchIndex, (batch, sums)) in zip(batches, try scorer.preferenceSequenceSums(batches)).enumerated() {
                for (sequence, sum) in zip(batch.preferenceSequences, sums) {
                    let offset = batchIndex * rowsPerBatch + sequence.span.lowerBound / rows.sequenceLength
                    guard mine[offset] < pending.count else { continue }
                    fresh[2 * sequence.pair + (sequence.role == .rejected ? 1 : 0)] = sum
                    freshDone[indices[offset]] = 1
                }
            }
            chunks += 1
            if chunks % saveEvery == 0 || first + chunk >= pending.count {
                if degree > 1 {
                    try dataCommunicator.allreduce(&fresh, .sum)
                    try dataCommunicator.allreduce(&freshDone, .max)
                }
                for index in values.indices where fresh[index] != 0 { values[index] = fresh[index] }
                for index in done.indices where freshDone[index] != 0 { done[index] = 1 }
                fresh = [Double](repeating: 0, count: values.count)
                freshDone = [UInt8](repeating: 0, count: done.count)
                if world.rank == 0 { try save(values, done) }
                try world.barrier()
            }
        }
        return Outcome(references: values, cachedRows: cached, scoredRows: pending.count, seconds: monotonicSeconds() - start)
    }

    /// The cached figures and row flags, or zeros and no row done when there is no cache for this key.
    private func load(_ rows: PreferencePackedRows) throws -> ([Double], [UInt8]) {
        let empty = ([Double](repeating: 0, count: 2 * rows.pairs.count), [UInt8](repeating: 0, count: rows.rows.count))
        guard let data = FileManager.default.contents(atPath: path), let newline = data.firstIndex(of: UInt8(ascii: "\n")),
              let header = try? JSONSerialization.jsonObject(with: data[..<newline]) as? [String: Any],
              header["key"] as? String == key, header["pairs"] as? Int == rows.pairs.count, header["rows"] as? Int == rows.rows.count
        else { return empty }
        let body = data[(newline + 1)...]
        guard body.count == rows.rows.count + 16 * rows.pairs.count else { return empty }
        let done = [UInt8](body.prefix(rows.rows.count))
        let values = body.dropFirst(rows.rows.count).withUnsafeBytes { raw in
            (0..<2 * rows.pairs.count).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) }
        }
        return (values, done)
    }

    private func save(_ values: [Double], _ done: [UInt8]) throws {
        let header: [String: Any] = ["key": key, "pairs": values.count / 2, "rows": done.count, "format": "done[u8 × rows] then f64le[2 × pairs]"]
        var data = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        data.append(UInt8(ascii: "\n"))
        data.append(contentsOf: done)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let temporary = path + ".tmp"
            try data.write(to: URL(fileURLWithPath: temporary))
            // rename(2) replaces the old cache atomically: a reader sees the old figures or the new.
            guard rename(temporary, path) == 0 else { throw JobError(String(cString: strerror(errno))) }
        } catch {
            throw JobError("cannot write the reference log-probabilities to \(path): \(FileProblem.reason(error, path: path)); check that the run directory is writable")
        }
    }
}
