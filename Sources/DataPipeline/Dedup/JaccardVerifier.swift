import Runtime

/// `--verify-jaccard`: keeps a MinHash candidate pair only when the exact Jaccard similarity of
/// the two documents' shingle sets reaches `--threshold`. A pair is held by the rank that reads
/// its later document; the earlier document's shingles are fetched from the rank that reads it
/// (which re-reads the units holding requested documents and sends the sorted shingle hashes).
struct JaccardVerifier {
    let world: Communicator
    let options: DedupOptions
    let units: [WorkUnit]
    let unitOwner: [Int]

    func verify(_ pairs: [(UInt64, UInt64)]) throws -> [(UInt64, UInt64)] {
        var requests = [[UInt64]](repeating: [], count: world.size)
        for earlier in Set(pairs.map(\.0)).sorted() { requests[unitOwner[DocumentSignature.unit(of: earlier)]].append(earlier) }
        let asked = try world.alltoall(requests)
        var needed = Set(pairs.map(\.1))
        for block in asked { needed.formUnion(block) }
        let local = try shingleSets(of: needed)
        // Replies: per requested document, its shingle count and then the shingles.
        let answers = asked.map { block in
            block.flatMap { ordinal -> [UInt64] in
                let set = local[ordinal] ?? []
                return [UInt64(set.count)] + set
            }
        }
        let replies = try world.alltoall(answers)
        var remote = [UInt64: [UInt64]]()
        for rank in 0..<world.size {
            var offset = 0
            for ordinal in requests[rank] {
                let count = Int(replies[rank][offset])
                remote[ordinal] = Array(replies[rank][(offset + 1)..<(offset + 1 + count)])
                offset += 1 + count
            }
        }
        return pairs.filter { pair in
            Self.jaccard(remote[pair.0] ?? [], local[pair.1] ?? []) >= options.threshold
        }
    }

    /// Sorted distinct shingles of the given documents, all read by this rank.
    private func shingleSets(of ordinals: Set<UInt64>) throws -> [UInt64: [UInt64]] {
        var hasher = ShingleHasher(ngramSize: options.ngramSize)
        var sets = [UInt64: [UInt64]]()
        for unitIndex in Set(ordinals.map(DocumentSignature.unit(of:))).sorted() {
            let reader = try RecordReader(unit: units[unitIndex], options: options.reader)
            while let record = try reader.next() {
                let ordinal = DocumentSignature.ordinal(unit: unitIndex, line: record.source.line)
                guard ordinals.contains(ordinal) else { continue }
                var text = record.text
                sets[ordinal] = hasher.shingleSet(&text)
            }
        }
        return sets
    }

    /// |A ∩ B| / |A ∪ B| of two sorted, distinct arrays (0 when both are empty).
    static func jaccard(_ first: [UInt64], _ second: [UInt64]) -> Double {
        guard !first.isEmpty || !second.isEmpty else { return 0 }
        var left = 0, right = 0, common = 0
        while left < first.count && right < second.count {
            if first[left] == second[right] {
                common += 1
                left += 1
                right += 1
            } else if first[left] < second[right] {
                left += 1
            } else {
                right += 1
            }
        }
        return Double(common) / Double(first.count + second.count - common)
    }
}
