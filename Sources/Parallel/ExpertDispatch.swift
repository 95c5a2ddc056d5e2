import Runtime

/// Expert parallelism's token exchange for one sparse layer (docs/moe.md, "Expert
/// parallelism"): the seam the expert-parallel layer builds on.
///
/// The ranks of an expert group (`DeviceMesh.expert`, ep ranks) each route their own tokens over
/// all E experts (`ExpertRouting`); expert e lives on rank e / (E / ep). A rank's kept slots, laid
/// out in its expert order (expert-major), are already grouped by destination — each rank's
/// experts are contiguous — so dispatch sends them as they are: first the counts (an all-to-all
/// of E / ep counts between every pair of ranks), then the rows (an all-to-allv). The rows arrive
/// source by source; they are reordered expert by expert (each local expert's rows from source
/// 0, then source 1, …), so each local expert runs one product over one block of rows. Combine
/// is the inverse — back to source order, an all-to-allv home — where the rows land in the
/// sender's expert order again. Backward uses the same two moves on gradients: an output
/// gradient goes out as its row went (dispatch), an input gradient comes back (combine).
public final class ExpertDispatch {
    public let communicator: Communicator
    public let expertCount: Int
    /// Experts per rank of the group.
    public let expertsPerRank: Int

    /// One exchange's counts, from `plan(keptCounts:)`.
    public struct Plan: Sendable, Equatable {
        /// Rows this rank sends to, and receives from, each rank of the group.
        public let sendCounts, receiveCounts: [Int]
        /// [source][local expert]: rows received from `source` for each of this rank's experts.
        public let receivedCounts: [[Int]]
        /// Each local expert's first row in expert-major order; the last is `receivedCount`.
        public let expertStarts: [Int]
        public var receivedCount: Int { expertStarts.last ?? 0 }
        public var sentCount: Int { sendCounts.reduce(0, +) }
    }

    public init(communicator: Communicator, expertCount: Int) {
        precondition(expertCount % communicator.size == 0, "expert parallel degree \(communicator.size) must divide \(expertCount) experts")
        self.communicator = communicator
        self.expertCount = expertCount
        expertsPerRank = expertCount / communicator.size
    }

    /// This rank's experts.
    public var localExperts: Range<Int> {
        communicator.rank * expertsPerRank..<(communicator.rank + 1) * expertsPerRank
    }

    /// The counts of an exchange in which this rank sends `keptCounts[e]` rows to each expert e
    /// (its kept slots per expert, in expert order): one all-to-all of E / ep counts per rank.
    public func plan(keptCounts: [Int]) throws(MPIError) -> Plan {
        precondition(keptCounts.count == expertCount, "\(keptCounts.count) counts for \(expertCount) experts")
        let size = communicator.size, perRank = expertsPerRank
        let outgoing = keptCounts.map { Int64($0) }
        var incoming = [Int64](repeating: 0, count: expertCount)
        try outgoing.withUnsafeBufferPointer { (send) throws(MPIError) in
            try incoming.withUnsafeMutableBufferPointer { (receive) throws(MPIError) in
                try communicator.alltoall(send, into: receive)
            }
        }
        let receivedCounts = (0..<size).map { source in (0..<perRank).map { Int(incoming[source * perRank + $0]) } }
        var starts = [0]
        for expert in 0..<perRank { starts.append(starts[expert] + receivedCounts.reduce(0) { $0 + $1[expert] }) }
        return Plan(sendCounts: (0..<size).map { rank in keptCounts[rank * perRank..<(rank + 1) * perRank].reduce(0, +) },
                    receiveCounts: receivedCounts.map { $0.reduce(0, +) }, receivedCounts: receivedCounts, expertStarts: starts)
    }

    /// Sends `rows` ([plan.sentCount, width], this rank's kept slots in expert order) to the
    /// ranks of their experts; `output` ([plan.receivedCount, width]) receives this rank's
    /// experts' rows, expert-major. `scratch` holds [plan.receivedCount, width].
    public func dispatch(_ rows: UnsafePointer<Float>, width: Int, plan: Plan, into output: UnsafeMutablePointer<Float>,
                         scratch: UnsafeMutablePointer<Float>) throws(MPIError) {
        try communicator.alltoall(UnsafeBufferPointer(start: rows, count: plan.sentCount * width), sendCounts: plan.sendCounts.map { $0 * width },
                                  into: UnsafeMutableBufferPointer(start: scratch, count: plan.receivedCount * width),
                                  receiveCounts: plan.receiveCounts.map { $0 * width })
        reorder(plan, width: width, from: scratch, to: output, toExpertMajor: true)
    }

    /// The inverse of `dispatch`: `rows` ([plan.receivedCount, width], this rank's experts' rows,
    /// expert-major) go back to the ranks they came from; `output` ([plan.sentCount, width])
    /// receives this rank's rows in its expert order. `scratch` holds [plan.receivedCount, width].
    public func combine(_ rows: UnsafePointer<Float>, width: Int, plan: Plan, into output: UnsafeMutablePointer<Float>,
                        scratch: UnsafeMutablePointer<Float>) throws(MPIError) {
        reorder(plan, width: width, from: rows, to: scratch, toExpertMajor: false)
        try communicator.alltoall(UnsafeBufferPointer(start: scratch, count: plan.receivedCount * width),
                                  sendCounts: plan.receiveCounts.map { $0 * width },
                                  into: UnsafeMutableBufferPointer(start: output, count: plan.sentCount * width),
                                  receiveCounts: plan.sendCounts.map { $0 * width })
    }

    /// Copies `source` into `destination` between source-major order (source 0's rows for each
    /// local expert, then source 1's, …) and expert-major order (local expert 0's rows from each
    /// source, then expert 1's, …), in the direction `toExpertMajor` says.
    private func reorder(_ plan: Plan, width: Int, from source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<Float>,
                         toExpertMajor: Bool) {
        var sourceMajorRow = 0
        var expertMajorRow = Array(plan.expertStarts.dropLast())
        for sender in plan.receivedCounts.indices {
            for expert in 0..<expertsPerRank {
                let count = plan.receivedCounts[sender][expert]
                let (from, to) = toExpertMajor ? (sourceMajorRow, expertMajorRow[expert]) : (expertMajorRow[expert], sourceMajorRow)
                (destination + to * width).update(from: source + from * width, count: count * width)
                sourceMajorRow += count
                expertMajorRow[expert] += count
            }
        }
    }
}
