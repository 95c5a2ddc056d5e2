import ArgumentParser
import Foundation
import Runtime

struct BenchAllreduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "MPI_Allreduce bus bandwidth per message size, next to point-to-point and memcpy bandwidth measured in the same run.",
        discussion: """
            Run under mpirun with 2 or more ranks. Bus bandwidth follows nccl-tests: algorithm
            bandwidth (bytes / time) × 2(n−1)/n, the bytes each rank's link must carry in a ring,
            so it compares directly with the point-to-point bandwidth between two ranks.
            """)

    @OptionGroup var job: JobOptions
    @OptionGroup var bench: BenchOptions
    @Option(parsing: .unconditional, help: "Largest message in MiB (default 64; --quick: 16).") var maxMib: Int?

    func run() throws {
        try job.runJob { context in
            let world = context.world
            guard world.size >= 2 else {
                throw JobError("bench allreduce needs at least 2 ranks: mpirun -np 2 meshlm bench allreduce")
            }
            printMachineReport(context, json: bench.json)
            let largest = (maxMib ?? (bench.quick ? 16 : 64)) << 20
            var sizes: [Int] = []
            var bytes = 4 << 10
            while bytes <= largest { sizes.append(bytes); bytes *= 4 }
            let seconds = bench.quick ? 0.05 : 0.2
            var report = BenchReport(bench: "allreduce",
                                     columns: ["size", "time µs", "algbw GB/s", "busbw GB/s median (range)", "p2p GB/s", "memcpy GB/s", "busbw/p2p"],
                                     json: bench.json, log: context.log)
            for size in sizes {
                let count = size / MemoryLayout<Float>.stride
                var buffer = [Float](repeating: Float(world.rank + 1), count: count)
                // Every rank times the same number of calls: the count is agreed first.
                let timing = try timeCollectively(world, seconds: seconds, repeats: bench.repeats) {
                    try buffer.withUnsafeMutableBufferPointer { try world.allreduce($0, .sum) }
                }
                let point = try pointToPoint(world, bytes: size, seconds: seconds, repeats: bench.repeats)
                let copy = memcpyBandwidth(bytes: size, seconds: seconds, repeats: bench.repeats)
                let ring = 2 * Double(world.size - 1) / Double(world.size)
                let algbw = timing.rate(Double(size) / 1e9)
                let busbw = (algbw.median * ring, algbw.low * ring, algbw.high * ring)
                report.add(cells: [sizeText(size), String(format: "%.1f", timing.median * 1e6), String(format: "%.2f", algbw.median),
                                   formatRange(busbw, digits: 2), String(format: "%.2f", point), String(format: "%.2f", copy),
                                   String(format: "%.2f", busbw.0 / point)],
                           fields: ["ranks": world.size, "bytes": size, "time_us": timing.median * 1e6, "algbw_gb_per_s": algbw.median,
                                    "busbw_gb_per_s": busbw.0, "busbw_gb_per_s_min": busbw.1, "busbw_gb_per_s_max": busbw.2,
                                    "p2p_gb_per_s": point, "memcpy_gb_per_s": copy, "fraction_of_p2p": busbw.0 / point,
                                    "repeats": timing.repeats])
            }
            report.printTable()
        }
    }

    /// Times `body` on every rank with the same call count (rank 0's calibration), reporting the
    /// slowest rank's time per call for each repeat (a collective is as slow as its last rank).
    private func timeCollectively(_ world: Communicator, seconds: Double, repeats: Int, _ body: () throws -> Void) throws -> Timing {
        try world.barrier()
        let start = monotonicSeconds()
        try body()
        var once = [monotonicSeconds() - start]
        try world.allreduce(&once, .max)
        let calls = max(1, Int(seconds / max(once[0], 1e-7)))
        var samples: [Double] = []
        for _ in 0..<repeats {
            try world.barrier()
            let begin = monotonicSeconds()
            for _ in 0..<calls { try body() }
            samples.append(try world.allreduce((monotonicSeconds() - begin) / Double(calls), .max))
        }
        samples.sort()
        return Timing(median: samples[samples.count / 2], minimum: samples[0], maximum: samples[samples.count - 1], repeats: repeats)
    }

    /// Ping-pong between ranks 0 and 1: bytes / (round trip / 2), median of repeats. Other ranks idle.
    private func pointToPoint(_ world: Communicator, bytes: Int, seconds: Double, repeats: Int) throws -> Double {
        var buffer = [UInt8](repeating: 1, count: bytes)
        let timing = try timeCollectively(world, seconds: seconds, repeats: repeats) {
            try buffer.withUnsafeMutableBufferPointer { data in
                if world.rank == 0 {
                    try world.send(UnsafeBufferPointer(data), to: 1, tag: 3)
                    try world.receive(into: data, from: 1, tag: 3)
                } else if world.rank == 1 {
                    try world.receive(into: data, from: 0, tag: 3)
                    try world.send(UnsafeBufferPointer(data), to: 0, tag: 3)
                }
            }
        }
        return Double(bytes) / (timing.median / 2) / 1e9
    }

    /// memcpy of the same size within one rank: read + write bytes counted once each way, as
    /// STREAM's copy counts them (2 × size per copy).
    private func memcpyBandwidth(bytes: Int, seconds: Double, repeats: Int) -> Double {
        let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { source.deallocate(); destination.deallocate() }
        memset(source, 1, bytes)
        memset(destination, 0, bytes)
        let timing = Timing.measure(repeats: repeats, minimumSeconds: seconds) { memcpy(destination, source, bytes) }
        return 2 * Double(bytes) / timing.median / 1e9
    }

    private func sizeText(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : "\(bytes >> 10) KiB"
    }
}
