// Multi-rank checks of the Communicator and the DeviceMesh, run by Tests/MeshLMTests under
// `mpirun -np N`. Every input depends on the rank, so a collective that routes data to the
// wrong place cannot produce the expected result. Rank 0 prints "ok NAME" for each check that
// passed on every rank; any mismatch ends the job with a message naming the check and the rank.
import Foundation
import Runtime

func expect<T: Equatable>(_ name: String, _ got: T, _ want: T, rank: Int) throws {
    guard got == want else { throw JobError("check \(name) failed on rank \(rank): got \(got), want \(want)") }
}

/// Runs one named check on every rank and reports it once.
func check(_ name: String, _ world: Communicator, _ log: Log, _ body: () throws -> Void) throws {
    try world.collectively(body)
    log.info("ok \(name)")
}

func collectiveChecks(_ world: Communicator, _ log: Log) throws {
    let rank = world.rank, size = world.size
    try check("allreduce-sum-float", world, log) {
        var values: [Float] = (0..<5).map { Float(rank * 10 + $0) }
        try world.allreduce(&values, .sum)
        try expect("allreduce-sum-float", values, (0..<5).map { i in Float((0..<size).map { $0 * 10 + i }.reduce(0, +)) }, rank: rank)
    }
    try check("allreduce-sum-double", world, log) {
        var values: [Double] = [Double(rank) + 0.5, -Double(rank)]
        try world.allreduce(&values, .sum)
        try expect("allreduce-sum-double", values, [Double(size * (size - 1)) / 2 + 0.5 * Double(size), -Double(size * (size - 1) / 2)], rank: rank)
    }
    try check("allreduce-max-int32", world, log) {
        var values: [Int32] = [Int32(rank), Int32(-rank), Int32((rank * 7) % 5)]
        try world.allreduce(&values, .max)
        try expect("allreduce-max-int32", values, [Int32(size - 1), 0, Int32((0..<size).map { ($0 * 7) % 5 }.max() ?? 0)], rank: rank)
    }
    try check("allreduce-max-int64", world, log) {
        let got = try world.allreduce(Int64(rank) << 40, .max)
        try expect("allreduce-max-int64", got, Int64(size - 1) << 40, rank: rank)
    }
    try check("allreduce-min-float", world, log) {
        let got = try world.allreduce(Float(rank) - 3.25, .min)
        try expect("allreduce-min-float", got, -3.25, rank: rank)
    }
    try check("allreduce-max-double", world, log) {
        let got = try world.allreduce(Double(rank) * 1.5, .max)
        try expect("allreduce-max-double", got, Double(size - 1) * 1.5, rank: rank)
    }
    try check("allreduce-sum-int64", world, log) {
        var values: [Int64] = [Int64(rank + 1) * 1_000_000_007]
        try world.allreduce(&values, .sum)
        try expect("allreduce-sum-int64", values[0], Int64(size * (size + 1) / 2) * 1_000_000_007, rank: rank)
    }
    try check("broadcast", world, log) {
        let root = size - 1
        var values: [Int32] = rank == root ? [7, 8, 9] : [0, 0, 0]
        try world.broadcast(&values, root: root)
        try expect("broadcast", values, [7, 8, 9], rank: rank)
        let text = try world.broadcast(rank == root ? "from rank \(root) ✓" : "", root: root)
        try expect("broadcast-string", text, "from rank \(root) ✓", rank: rank)
    }
    try check("reduce-scatter-block", world, log) {
        // Block b of rank r holds r*100 + b*10 + i; block b of the sum lands on rank b.
        let block = 3
        let send: [Float] = (0..<size * block).map { Float(rank * 100 + ($0 / block) * 10 + $0 % block) }
        var receive = [Float](repeating: 0, count: block)
        try send.withUnsafeBufferPointer { s in try receive.withUnsafeMutableBufferPointer { r in try world.reduceScatter(s, into: r, .sum) } }
        let want = (0..<block).map { i in Float((0..<size).map { $0 * 100 + rank * 10 + i }.reduce(0, +)) }
        try expect("reduce-scatter-block", receive, want, rank: rank)
    }
    try check("reduce-scatter-uneven", world, log) {
        let counts = (0..<size).map { $0 + 1 }
        let total = counts.reduce(0, +)
        let send: [Double] = (0..<total).map { Double($0 * (rank + 1)) }
        var receive = [Double](repeating: 0, count: counts[rank])
        try send.withUnsafeBufferPointer { s in try receive.withUnsafeMutableBufferPointer { r in try world.reduceScatter(s, into: r, counts: counts, .sum) } }
        let start = counts[..<rank].reduce(0, +)
        let factor = Double(size * (size + 1) / 2)
        try expect("reduce-scatter-uneven", receive, (start..<start + counts[rank]).map { Double($0) * factor }, rank: rank)
    }
    try check("allgather", world, log) {
        let send: [Int64] = [Int64(rank), Int64(rank * rank)]
        var receive = [Int64](repeating: -1, count: 2 * size)
        try send.withUnsafeBufferPointer { s in try receive.withUnsafeMutableBufferPointer { r in try world.allgather(s, into: r) } }
        try expect("allgather", receive, (0..<size).flatMap { [Int64($0), Int64($0 * $0)] }, rank: rank)
    }
    try check("allgatherv", world, log) {
        let send: [Float] = (0..<rank + 1).map { Float(rank) + Float($0) / 10 }
        let gathered = try world.allgather(send)
        try expect("allgatherv", gathered, (0..<size).map { r in (0..<r + 1).map { Float(r) + Float($0) / 10 } }, rank: rank)
    }
    try check("gatherv", world, log) {
        // Rank r sends r + 1 values; only the root (the last rank) receives, in rank order.
        let send: [Float] = (0..<rank + 1).map { Float(rank * 100 + $0) }
        let counts = (0..<size).map { $0 + 1 }
        let root = size - 1
        var receive = [Float](repeating: -1, count: rank == root ? counts.reduce(0, +) : 0)
        try send.withUnsafeBufferPointer { s in
            try receive.withUnsafeMutableBufferPointer { r in try world.gather(s, into: r, counts: counts, root: root) }
        }
        try expect("gatherv", receive, rank == root ? (0..<size).flatMap { r in (0..<r + 1).map { Float(r * 100 + $0) } } : [],
                   rank: rank)
    }
    try check("alltoall", world, log) {
        // Rank r sends r*1000 + destination*10 + i to each destination.
        let block = 2
        let send: [Int32] = (0..<size * block).map { Int32(rank * 1000 + ($0 / block) * 10 + $0 % block) }
        var receive = [Int32](repeating: -1, count: size * block)
        try send.withUnsafeBufferPointer { s in try receive.withUnsafeMutableBufferPointer { r in try world.alltoall(s, into: r) } }
        try expect("alltoall", receive, (0..<size * block).map { Int32(($0 / block) * 1000 + rank * 10 + $0 % block) }, rank: rank)
    }
    try check("alltoallv", world, log) {
        // Rank r sends (r + d) % 3 values to rank d, each encoding (r, d, i).
        let send: [[Int64]] = (0..<size).map { d in (0..<(rank + d) % 3).map { Int64(rank * 10_000 + d * 100 + $0) } }
        let receive = try world.alltoall(send)
        try expect("alltoallv", receive, (0..<size).map { s in (0..<(s + rank) % 3).map { Int64(s * 10_000 + rank * 100 + $0) } }, rank: rank)
    }
    try check("send-receive-ring", world, log) {
        guard size > 1 else { return }
        let next = (rank + 1) % size, previous = (rank + size - 1) % size
        var incoming = [Double](repeating: 0, count: 4)
        // Even ranks send first, odd ranks receive first: no deadlock on blocking calls.
        if rank % 2 == 0 {
            try world.send((0..<4).map { Double(rank) + Double($0) }, to: next, tag: 5)
            let status = try world.receive(into: &incoming, from: previous, tag: 5)
            try expect("send-receive-status", status, MessageStatus(source: previous, tag: 5), rank: rank)
        } else {
            let status = try world.receive(into: &incoming, from: nil, tag: nil)
            try expect("send-receive-status", status, MessageStatus(source: previous, tag: 5), rank: rank)
            try world.send((0..<4).map { Double(rank) + Double($0) }, to: next, tag: 5)
        }
        try expect("send-receive-ring", incoming, (0..<4).map { Double(previous) + Double($0) }, rank: rank)
    }
    try check("isend-irecv", world, log) {
        let next = (rank + 1) % size, previous = (rank + size - 1) % size
        let outgoing: [Float] = (0..<1000).map { Float(rank * 1000 + $0) }
        var incoming = [Float](repeating: 0, count: 1000)
        try outgoing.withUnsafeBufferPointer { out in
            try incoming.withUnsafeMutableBufferPointer { inc in
                let receive = try world.receiveNonBlocking(into: inc, from: previous, tag: 9)
                let send = try world.sendNonBlocking(out, to: next, tag: 9)
                try Request.waitAll([send, receive])
                try expect("isend-irecv-complete", receive.isComplete && send.isComplete, true, rank: rank)
            }
        }
        try expect("isend-irecv", incoming, (0..<1000).map { Float(previous * 1000 + $0) }, rank: rank)
    }
    try check("nonblocking-collectives", world, log) {
        var summed: [Float] = (0..<256).map { Float(rank + $0) }
        let send: [Float] = (0..<4 * size).map { Float(rank * 4 * size + $0) }
        var scattered = [Float](repeating: 0, count: 4)
        let piece: [Int32] = [Int32(rank), Int32(-rank)]
        var gathered = [Int32](repeating: 0, count: 2 * size)
        var broadcasted: [Double] = rank == 0 ? [3.5, 4.5] : [0, 0]
        try summed.withUnsafeMutableBufferPointer { sum in
            try send.withUnsafeBufferPointer { s in
                try scattered.withUnsafeMutableBufferPointer { sc in
                    try piece.withUnsafeBufferPointer { p in
                        try gathered.withUnsafeMutableBufferPointer { g in
                            try broadcasted.withUnsafeMutableBufferPointer { b in
                                let requests = [try world.allreduceNonBlocking(sum, .sum),
                                                try world.reduceScatterNonBlocking(s, into: sc, .sum),
                                                try world.allgatherNonBlocking(p, into: g),
                                                try world.broadcastNonBlocking(b, root: 0)]
                                // Progress by testing, as the DP overlap does between layers.
                                while try !requests.allSatisfy({ try $0.test() }) {}
                            }
                        }
                    }
                }
            }
        }
        let rankSum = size * (size - 1) / 2
        try expect("iallreduce", summed, (0..<256).map { Float(rankSum + size * $0) }, rank: rank)
        try expect("ireduce-scatter", scattered, (0..<4).map { i in Float((0..<size).map { $0 * 4 * size + rank * 4 + i }.reduce(0, +)) }, rank: rank)
        try expect("iallgather", gathered, (0..<size).flatMap { [Int32($0), Int32(-$0)] }, rank: rank)
        try expect("ibcast", broadcasted, [3.5, 4.5], rank: rank)
    }
    try check("split", world, log) {
        // Odd and even ranks, ordered backwards inside each half.
        guard let half = try world.split(color: rank % 2, key: -rank) else { throw JobError("split gave no communicator") }
        let members = try half.allgather([Int32(rank)]).flatMap { $0 }
        try expect("split", members, (0..<size).filter { $0 % 2 == rank % 2 }.reversed().map { Int32($0) }, rank: rank)
        let none = try world.split(color: rank == 0 ? nil : 1, key: rank)
        try expect("split-undefined", none == nil, rank == 0, rank: rank)
    }
    try check("gather-strings", world, log) {
        let lines = try world.gather(String(repeating: "r\(rank)", count: rank + 1), root: 0)
        try expect("gather-strings", lines, rank == 0 ? (0..<size).map { String(repeating: "r\($0)", count: $0 + 1) } : [], rank: rank)
    }
    try check("barrier", world, log) { try world.barrier() }
}

/// Every group of the mesh, checked by what flows through its communicator.
func meshChecks(_ world: Communicator, _ log: Log, degrees: [Int]) throws {
    let dims = try world.collectively {
        try ParallelDims(worldSize: world.size, pipelineDegree: degrees[0], dataDegree: degrees[1],
                         contextDegree: degrees[2], tensorDegree: degrees[3], expertDegree: degrees[4])
    }
    let mesh = try world.collectively { try DeviceMesh(world: world, dims: dims) }
    let c = mesh.coordinates
    try check("mesh-coordinates", world, log) {
        try expect("rank-roundtrip", dims.rank(pipeline: c.pipeline, data: c.data, context: c.context, tensor: c.tensor), world.rank, rank: world.rank)
        try expect("tensor-rank", mesh.tensor.rank, c.tensor, rank: world.rank)
        try expect("context-rank", mesh.context.rank, c.context, rank: world.rank)
        try expect("data-rank", mesh.data.rank, c.data, rank: world.rank)
        try expect("pipeline-rank", mesh.pipeline.rank, c.pipeline, rank: world.rank)
        try expect("expert-rank", mesh.expert.rank, c.expert, rank: world.rank)
        try expect("sizes", [mesh.tensor.size, mesh.context.size, mesh.data.size, mesh.pipeline.size, mesh.dataContext.size, mesh.expert.size],
                   [dims.tensorDegree, dims.contextDegree, dims.dataDegree, dims.pipelineDegree, dims.dataDegree * dims.contextDegree, dims.expertDegree], rank: world.rank)
    }
    for group in MeshGroup.allCases {
        try check("mesh-group-\(group.rawValue)", world, log) {
            // The sum of world ranks over the group's communicator equals the sum of its members.
            let sum = try mesh[group].allreduce(Int64(world.rank), .sum)
            let members = dims.members(of: group, withRank: world.rank)
            try expect("mesh-group-\(group.rawValue)", sum, Int64(members.reduce(0, +)), rank: world.rank)
        }
    }
    try check("mesh-pipeline-p2p", world, log) {
        // Each stage passes its world rank to the next stage, as activations flow forward.
        let stages = mesh.pipeline
        guard stages.size > 1 else { return }
        var incoming: [Int32] = [-1]
        var requests: [Request] = []
        let outgoing: [Int32] = [Int32(world.rank)]
        try outgoing.withUnsafeBufferPointer { out in
            try incoming.withUnsafeMutableBufferPointer { inc in
                if stages.rank > 0 { requests.append(try stages.receiveNonBlocking(into: inc, from: stages.rank - 1, tag: 1)) }
                if stages.rank < stages.size - 1 { requests.append(try stages.sendNonBlocking(out, to: stages.rank + 1, tag: 1)) }
                try Request.waitAll(requests)
            }
        }
        let want = stages.rank > 0 ? Int32(dims.rank(pipeline: c.pipeline - 1, data: c.data, context: c.context, tensor: c.tensor)) : -1
        try expect("mesh-pipeline-p2p", incoming[0], want, rank: world.rank)
    }
}

let arguments = CommandLine.arguments.dropFirst()
let status = SPMDJob.run(verbose: false, setup: { world, log in (world, log) }, body: { world, log in
    switch arguments.first {
    case "collectives":
        try collectiveChecks(world, log)
    case "mesh":
        let degrees = arguments.dropFirst().compactMap { Int($0) }
        guard degrees.count == 5 else { throw JobError("usage: mpi-checks mesh PP DP CP TP EP") }
        try meshChecks(world, log, degrees: degrees)
    case "fail-one-rank":
        // The last rank fails alone, while the others wait in a collective it never joins.
        if world.rank == world.size - 1 { throw JobError("rank \(world.rank) could not open shard-0007.h5") }
        try world.barrier()
    case "fail-collectively":
        try world.collectively { if world.rank % 2 == 1 { throw JobError("bad input seen by rank \(world.rank)") } }
    case "checkpoint-unit", "checkpoint-save", "checkpoint-load", "checkpoint-crash", "checkpoint-audit":
        try checkpointChecks(world, log, arguments: Array(arguments))
    case "objective":
        try objectiveChecks(world, log, arguments: Array(arguments))
    case "forward":
        try forwardChecks(world, log, arguments: Array(arguments))
    case "reference":
        try referenceChecks(world, log, arguments: Array(arguments))
    case "expert-dispatch":
        try expertDispatchChecks(world, log)
    default:
        throw JobError("usage: mpi-checks collectives | mesh PP DP CP TP EP | fail-one-rank | fail-collectively | checkpoint-unit | checkpoint-save | checkpoint-load | checkpoint-crash | checkpoint-audit | objective … | forward … | reference … | expert-dispatch")
    }
})
exit(status)
