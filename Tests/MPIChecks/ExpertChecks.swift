import Foundation
import Parallel
import Runtime

/// `ExpertDispatch` over the world as one expert group, E = 2 × ranks experts: every rank
/// routes its own rows (rank- and row-dependent counts per expert, some zero), each expert's
/// owner receives exactly the rows routed to it — from every source, in source order, their
/// values naming their origin — and combine returns each row to its sender's expert order.
func expertDispatchChecks(_ world: Communicator, _ log: Log) throws {
    let (rank, size) = (world.rank, world.size)
    let experts = 2 * size, width = 3
    let dispatch = ExpertDispatch(communicator: world, expertCount: experts)
    /// Rows rank `source` routes to expert `e` (0 for some pairs).
    func count(_ source: Int, _ e: Int) -> Int { (source * 3 + e * 5) % 4 }
    /// Row `i` of `source`'s rows for expert `e`: its origin in its values.
    func row(_ source: Int, _ e: Int, _ i: Int) -> [Float] { [Float(source), Float(e), Float(i)] }
    try check("expert-dispatch", world, log) {
        let kept = (0..<experts).map { count(rank, $0) }
        let rows = (0..<experts).flatMap { e in (0..<count(rank, e)).flatMap { row(rank, e, $0) } }
        let plan = try dispatch.plan(keptCounts: kept)
        try expect("expert-dispatch-local-experts", dispatch.localExperts, 2 * rank..<2 * rank + 2, rank: rank)
        let expected = dispatch.localExperts.flatMap { e in (0..<size).flatMap { source in (0..<count(source, e)).flatMap { row(source, e, $0) } } }
        var received = [Float](repeating: -1, count: plan.receivedCount * width)
        var scratch = [Float](repeating: -1, count: plan.receivedCount * width)
        try rows.withUnsafeBufferPointer { send in
            try received.withUnsafeMutableBufferPointer { output in
                try scratch.withUnsafeMutableBufferPointer { s in
                    try dispatch.dispatch(send.baseAddress!, width: width, plan: plan, into: output.baseAddress!, scratch: s.baseAddress!)
                }
            }
        }
        try expect("expert-dispatch-rows", received, expected, rank: rank)
        try expect("expert-dispatch-starts", plan.expertStarts,
                   [0, (0..<size).reduce(0) { $0 + count($1, 2 * rank) }, expected.count / width], rank: rank)
        // Each owner transforms its rows (×10 + its rank); combine brings them home in order.
        let transformed = received.map { $0 * 10 + Float(rank) }
        var home = [Float](repeating: -1, count: rows.count)
        try transformed.withUnsafeBufferPointer { back in
            try home.withUnsafeMutableBufferPointer { output in
                try scratch.withUnsafeMutableBufferPointer { s in
                    try dispatch.combine(back.baseAddress!, width: width, plan: plan, into: output.baseAddress!, scratch: s.baseAddress!)
                }
            }
        }
        let owner = { (e: Int) in Float(e / 2) }
        let want = (0..<experts).flatMap { e in (0..<count(rank, e)).flatMap { row(rank, e, $0).map { $0 * 10 + owner(e) } } }
        try expect("expert-combine-rows", home, want, rank: rank)
    }
}
