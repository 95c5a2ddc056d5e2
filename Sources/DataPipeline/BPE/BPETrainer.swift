/// Learns byte-level BPE merges from piece counts.
///
/// Start: one token per byte (ids 0...255, id = byte value). Each step merges the most frequent
/// adjacent pair of tokens within pieces (never across pieces), weighted by piece counts; ties go
/// to the pair with the smaller left id, then the smaller right id (`PairHeap`). The merged
/// token gets the next id — unless a token with the same bytes already exists (two pairs can
/// spell the same bytes), which it then reuses, as Hugging Face does. Special tokens take the
/// last ids. Training stops at the vocabulary size, when no pair is left, or when the best pair
/// occurs fewer than `minimumFrequency` times.
///
/// Pair counts are kept up to date incrementally: a merge touches only the pieces that hold the
/// pair (an index pair → pieces), and the heap is corrected lazily (an entry whose count is out
/// of date is re-pushed with the current count when it comes up).
public struct BPETrainer {
    public struct Options: Sendable {
        /// Total ids, special tokens included.
        public var vocabularySize: Int
        public var specialTokens: [String]
        public var minimumFrequency: Int

        public init(vocabularySize: Int, specialTokens: [String] = BPEModel.defaultSpecialTokens, minimumFrequency: Int = 2) {
            self.vocabularySize = vocabularySize
            self.specialTokens = specialTokens
            self.minimumFrequency = minimumFrequency
        }
    }

    public let options: Options

    public init(options: Options) throws(DataError) {
        let smallest = 256 + options.specialTokens.count
        guard options.vocabularySize >= smallest else {
            throw DataError("--vocab-size \(options.vocabularySize) is too small: 256 byte tokens + \(options.specialTokens.count) special tokens need at least \(smallest)")
        }
        guard options.minimumFrequency >= 1 else {
            throw DataError("--min-frequency must be at least 1, got \(options.minimumFrequency)")
        }
        if let duplicate = Dictionary(grouping: options.specialTokens, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw DataError("special token '\(duplicate)' is given twice")
        }
        if options.specialTokens.contains("") { throw DataError("a special token cannot be empty") }
        self.options = options
    }

    /// Trains on `counts`; `onMerge` is called after every merge with the number done.
    public func train(_ counts: PieceCounts, onMerge: (Int) -> Void = { _ in }) -> BPEModel {
        let entries = counts.sortedEntries()
        var words = entries.map { $0.piece.map { Int32($0) } }
        let wordCounts = entries.map(\.count)
        var tokens = (0..<256).map { [UInt8($0)] }
        var idOfBytes = [[UInt8]: Int32]()
        for (id, token) in tokens.enumerated() { idOfBytes[token] = Int32(id) }
        var merges = [BPEModel.Merge]()

        @inline(__always) func key(_ left: Int32, _ right: Int32) -> UInt64 {
            UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        }
        var pairCounts = [UInt64: Int]()
        var pairWords = [UInt64: [Int32]]()
        for (index, word) in words.enumerated() where word.count > 1 {
            for position in 0..<word.count - 1 {
                let pair = key(word[position], word[position + 1])
                pairCounts[pair, default: 0] += wordCounts[index]
                pairWords[pair, default: []].append(Int32(index))
            }
        }
        var heap = PairHeap()
        for (pair, count) in pairCounts.sorted(by: { $0.key < $1.key }) { heap.push(.init(count: count, pair: pair)) }

        // Marks the words already rewritten for the current merge (a word is listed once per
        // occurrence of the pair, and lists keep words that no longer hold it).
        var visited = [Int](repeating: -1, count: words.count)
        let targetTokens = options.vocabularySize - options.specialTokens.count
        var rewritten = [Int32]()
        var touched = Set<UInt64>()
        while tokens.count < targetTokens, let top = heap.pop() {
            let current = pairCounts[top.pair] ?? 0
            if current != top.count {
                if current > 0 { heap.push(.init(count: current, pair: top.pair)) }
                continue
            }
            guard current >= options.minimumFrequency else { break }
            let left = Int32(truncatingIfNeeded: top.pair >> 32)
            let right = Int32(truncatingIfNeeded: top.pair)
            let merged = tokens[Int(left)] + tokens[Int(right)]
            let newId: Int32
            if let existing = idOfBytes[merged] {
                newId = existing
            } else {
                newId = Int32(tokens.count)
                tokens.append(merged)
                idOfBytes[merged] = newId
            }
            merges.append(.init(left: left, right: right, result: newId))
            touched.removeAll(keepingCapacity: true)
            for wordIndex in pairWords[top.pair] ?? [] where visited[Int(wordIndex)] != merges.count {
                visited[Int(wordIndex)] = merges.count
                let word = words[Int(wordIndex)]
                let weight = wordCounts[Int(wordIndex)]
                rewritten.removeAll(keepingCapacity: true)
                var position = 0
                while position < word.count {
                    if position + 1 < word.count, word[position] == left, word[position + 1] == right {
                        rewritten.append(newId)
                        position += 2
                    } else {
                        rewritten.append(word[position])
                        position += 1
                    }
                }
                guard rewritten.count != word.count else { continue }
                for position in 0..<word.count - 1 {
                    pairCounts[key(word[position], word[position + 1]), default: 0] -= weight
                }
                for position in 0..<max(0, rewritten.count - 1) {
                    let pair = key(rewritten[position], rewritten[position + 1])
                    pairCounts[pair, default: 0] += weight
                    if rewritten[position] == newId || rewritten[position + 1] == newId {
                        pairWords[pair, default: []].append(wordIndex)
                        touched.insert(pair)
                    }
                }
                words[Int(wordIndex)] = rewritten
            }
            pairCounts[top.pair] = nil
            pairWords[top.pair] = nil
            for pair in touched.sorted() where (pairCounts[pair] ?? 0) > 0 {
                heap.push(.init(count: pairCounts[pair] ?? 0, pair: pair))
            }
            onMerge(merges.count)
        }
        var specials = [BPEModel.SpecialToken]()
        for name in options.specialTokens {
            specials.append(.init(content: name, id: Int32(tokens.count)))
            tokens.append(Array(name.utf8))
        }
        return BPEModel(tokens: tokens, merges: merges, specialTokens: specials)
    }
}
