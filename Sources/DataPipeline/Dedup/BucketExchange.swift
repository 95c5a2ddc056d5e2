import Runtime

/// Pass 2 of dedup: sends every (bucket, document) entry to the rank that owns the bucket, finds
/// the buckets shared by two or more documents there, and turns them into candidate pairs held
/// by the rank that reads the later document of each pair.
struct BucketExchange {
    let world: Communicator
    let options: DedupOptions
    let unitOwner: [Int]
    private let sorter: BucketSorter
    /// Entries sent per rank per all-to-all round, bounding the exchange buffers.
    private let roundEntries: Int

    init(world: Communicator, options: DedupOptions, spillDirectory: String, unitOwner: [Int]) {
        self.world = world
        self.options = options
        self.unitOwner = unitOwner
        let budget = Int(options.memoryMegabytes * 1_048_576)
        sorter = BucketSorter(budgetBytes: budget / 2, spillDirectory: spillDirectory)
        roundEntries = max(1024, budget / 8 / MemoryLayout<BucketEntry>.stride)
    }

    var spilledRuns: Int { sorter.spilledRuns }

    private func bucketOwner(_ key: UInt64, _ tag: UInt64) -> Int {
        Int(TextHashing.mix(key ^ tag).multipliedFullWidth(by: UInt64(world.size)).high)
    }

    /// Candidate pairs `(earlier, later)` held by this rank (distinct; exact-text pairs apart
    /// from MinHash ones), and the number of exact duplicates found in this rank's buckets.
    mutating func candidatePairs(signatureFiles: [String]) throws
        -> (exact: [(UInt64, UInt64)], near: [(UInt64, UInt64)], exactDuplicates: Int) {
        var files = signatureFiles[...]
        var pending = [DocumentSignature]()[...]
        var more = true
        while true {
            var outgoing = [[UInt64]](repeating: [], count: world.size)
            var produced = 0
            while more && produced < roundEntries {
                if pending.isEmpty {
                    guard let file = files.popFirst() else {
                        more = false
                        break
                    }
                    pending = try SignatureFile.read(path: file)[...]
                    continue
                }
                guard let document = pending.popFirst() else { continue }
                if options.exact {
                    let tag = BucketEntry.exactTag | document.exactLow >> 1
                    outgoing[bucketOwner(document.exactHigh, tag)] += [document.exactHigh, tag, document.ordinal]
                    produced += 1
                }
                if options.minhash {
                    for (band, key) in document.bandKeys.enumerated() {
                        outgoing[bucketOwner(key, UInt64(band))] += [key, UInt64(band), document.ordinal]
                    }
                    produced += document.bandKeys.count
                }
            }
            for block in try world.alltoall(outgoing) {
                for index in stride(from: 0, to: block.count, by: 3) {
                    try sorter.append(BucketEntry(key: block[index], tag: block[index + 1], ordinal: block[index + 2]))
                }
            }
            if try world.allreduce(Int64(more ? 1 : 0), .max) == 0 { break }
        }

        var exactDuplicates = 0
        var outgoing = [[UInt64]](repeating: [], count: world.size)
        let withChains = options.verifyJaccard
        try sorter.forEachSharedBucket { tag, members in
            let kind: UInt64 = tag & BucketEntry.exactTag != 0 ? 1 : 0
            if kind == 1 { exactDuplicates += members.count - 1 }
            for index in 1..<members.count {
                let later = members[index]
                outgoing[unitOwner[DocumentSignature.unit(of: later)]] += [members[0], later, kind]
                // Verification may reject (first, x) while (previous, x) holds: offer both.
                if withChains && index > 1 && kind == 0 {
                    outgoing[unitOwner[DocumentSignature.unit(of: later)]] += [members[index - 1], later, kind]
                }
            }
        }
        var exact = Set<PairKey>()
        var near = Set<PairKey>()
        for block in try world.alltoall(outgoing) {
            for index in stride(from: 0, to: block.count, by: 3) {
                let pair = PairKey(first: block[index], second: block[index + 1])
                if block[index + 2] == 1 { exact.insert(pair) } else { near.insert(pair) }
            }
        }
        near.subtract(exact)
        let sortedExact = exact.sorted().map { ($0.first, $0.second) }
        let sortedNear = near.sorted().map { ($0.first, $0.second) }
        return (sortedExact, sortedNear, exactDuplicates)
    }
}

struct PairKey: Hashable, Comparable {
    let first: UInt64
    let second: UInt64

    static func < (left: PairKey, right: PairKey) -> Bool {
        left.first != right.first ? left.first < right.first : left.second < right.second
    }
}
