import Tensors

/// A copy of parts of this rank's training state (parameters, AdamW moments) taken lazily:
/// instead of copying at the step boundary where a checkpoint is saved, the next optimizer step
/// copies each value just before it overwrites it (`AdamW.Snapshot`, in the same pass over
/// memory), and `complete` copies whatever that step did not touch — values which, untouched,
/// are still the ones of the boundary. The destinations then hold exactly the state of the
/// boundary, as an immediate copy would have.
///
/// Parameters and moments change only in `DataParallelParameters.step`, so between the
/// boundary and that step they may be read (forward, backward) but are never written.
public final class StateSnapshot {
    /// `count` floats at `source` are to be copied to `destination`.
    public struct Region {
        public let source: UnsafeMutablePointer<Float>
        public let count: Int
        public let destination: UnsafeMutablePointer<Float>

        public init(source: UnsafeMutablePointer<Float>, count: Int, destination: UnsafeMutablePointer<Float>) {
            self.source = source
            self.count = count
            self.destination = destination
        }
    }

    /// Regions per state kind (parameters, first, second moments), sorted by source address;
    /// each with the element ranges already copied.
    private var regions: [[Region]]
    private var copied: [[[Range<Int>]]]
    public private(set) var isComplete = false

    public init(parameters: [Region], firstMoments: [Region], secondMoments: [Region]) {
        regions = [parameters, firstMoments, secondMoments].map { kind in
            kind.filter { $0.count > 0 }.sorted { $0.source < $1.source }
        }
        copied = regions.map { kind in kind.map { _ in [] } }
    }

    /// One piece of an optimizer update: `elements` of the arrays passed to `pieces`, with where
    /// to copy each array's old values (nil: not part of the snapshot).
    public struct Piece {
        public let elements: Range<Int>
        public let snapshot: AdamW.Snapshot?
    }

    /// Splits an update of `count` elements of the three arrays at the region boundaries and
    /// records the copies the caller is about to make; the caller runs `AdamW.update` per piece.
    public func pieces(parameters: UnsafeMutablePointer<Float>, firstMoments: UnsafeMutablePointer<Float>,
                       secondMoments: UnsafeMutablePointer<Float>, count: Int) -> [Piece] {
        precondition(!isComplete, "a completed snapshot used again")
        let bases = [parameters, firstMoments, secondMoments]
        // Per kind: (region index, its overlap with 0..<count, relative to the array).
        var overlaps: [[(region: Int, elements: Range<Int>)]] = [[], [], []]
        var cuts: Set<Int> = [0, count]
        for kind in 0..<3 {
            for (index, region) in regions[kind].enumerated() {
                let start = bases[kind].distance(to: region.source)
                let lower = Swift.max(start, 0), upper = Swift.min(start + region.count, count)
                guard lower < upper else { continue }
                overlaps[kind].append((index, lower..<upper))
                cuts.insert(lower)
                cuts.insert(upper)
            }
        }
        let bounds = cuts.sorted()
        var result: [Piece] = []
        for (lower, upper) in zip(bounds, bounds.dropFirst()) {
            var destinations: [UnsafeMutablePointer<Float>?] = [nil, nil, nil]
            for kind in 0..<3 {
                guard let overlap = overlaps[kind].first(where: { $0.elements.contains(lower) }) else { continue }
                let region = regions[kind][overlap.region]
                let regionStart = bases[kind].distance(to: region.source)
                destinations[kind] = region.destination + (lower - regionStart)
                copied[kind][overlap.region].append((lower - regionStart)..<(upper - regionStart))
            }
            let snapshot = destinations.allSatisfy { $0 == nil } ? nil
                : AdamW.Snapshot(parameters: destinations[0], firstMoments: destinations[1], secondMoments: destinations[2])
            result.append(Piece(elements: lower..<upper, snapshot: snapshot))
        }
        return result
    }

    /// Copies every element no update copied (the step did not write it, so it still holds the
    /// boundary's value) and marks the snapshot complete. Called after the optimizer step, or
    /// instead of it when the run saves without stepping again (its end, a stop).
    public func complete() {
        guard !isComplete else { return }
        for kind in 0..<3 {
            for (index, region) in regions[kind].enumerated() {
                var next = 0
                for range in copied[kind][index].sorted(by: { $0.lowerBound < $1.lowerBound }) + [region.count..<region.count] {
                    precondition(range.lowerBound >= next, "an element of a snapshot was copied twice")
                    if range.lowerBound > next {
                        (region.destination + next).update(from: region.source + next, count: range.lowerBound - next)
                    }
                    next = range.upperBound
                }
            }
        }
        isComplete = true
        regions = []
        copied = []
    }
}
