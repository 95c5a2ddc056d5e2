import CSupport

/// What the CPU offers and what this binary was built to use.
public struct CPUInfo: Sendable {
    public struct Features: Sendable, Equatable {
        public var avx2: Bool
        public var fma: Bool
        public var avx512: Bool

        init(_ raw: meshlm_cpu_features) {
            avx2 = raw.avx2 != 0
            fma = raw.fma != 0
            avx512 = raw.avx512f != 0 && raw.avx512bw != 0 && raw.avx512vl != 0
        }

        /// Widest fp32 vector: 16 lanes with AVX-512, 8 with AVX2, 4 otherwise.
        public var vectorLanes: Int { avx512 ? 16 : (avx2 ? 8 : 4) }
        public var summary: String { avx512 ? "AVX-512" : (avx2 ? (fma ? "AVX2+FMA" : "AVX2") : "SSE") }
    }

    public let brand: String
    /// What the running CPU supports (cpuid).
    public let runtime: Features
    /// What the binary's native code was compiled for (`-target-cpu` / `-march`).
    public let compiled: Features

    public init() {
        var buffer = [CChar](repeating: 0, count: 64)
        meshlm_cpu_brand(&buffer)
        brand = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        runtime = Features(meshlm_cpu_features_runtime())
        compiled = Features(meshlm_cpu_features_compiled())
    }

    /// The instruction sets the binary uses that this CPU lacks; non-empty means the binary would
    /// die of SIGILL in its kernels, so MeshLM stops with this explanation first.
    public var missingFeatures: [String] {
        var missing: [String] = []
        if compiled.avx512 && !runtime.avx512 { missing.append("AVX-512") }
        if compiled.avx2 && !runtime.avx2 { missing.append("AVX2") }
        if compiled.fma && !runtime.fma { missing.append("FMA") }
        return missing
    }

    /// The fp32 FMA peak of this CPU in GFLOP/s for `threads` cores, measured by running a loop of
    /// independent FMAs in the widest vector registers the binary was built for on each thread
    /// for `seconds`; the best of `repeats` runs (a peak is a ceiling, so the maximum is right).
    public static func measureFMAPeak(threads: Int, seconds: Double = 0.1, repeats: Int = 3) -> Double {
        let iterations = fmaIterations(lasting: seconds)
        var best = 0.0
        for _ in 0..<repeats {
            let flops = Locked(0.0)
            let start = monotonicSeconds()
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                var localSink: Float = 0
                let done = meshlm_fma_loop(iterations, &localSink)
                flops.add(done)
            }
            best = max(best, flops.value / (monotonicSeconds() - start) / 1e9)
        }
        return best
    }

    /// The fp32 FMA peak of one core in GFLOP/s, the same on every rank of `world`: rank 0
    /// measures it on its own thread while the other ranks sleep, then broadcasts it. MFU's
    /// denominator is this times the cores the job computes on (ranks × threads per rank).
    ///
    /// Measured with the other ranks idle because ranks measuring at once compete (for a core
    /// when oversubscribed, otherwise for clocks, power and cache; a rank still busy with its
    /// start-up steals from a neighbour), and a peak measured low makes MFU exceed 100 %. The
    /// others wait by polling a non-blocking broadcast every millisecond: a blocking barrier or
    /// broadcast spins in Open MPI and would itself take a core. Rank 0 alone rather than every
    /// rank in turn: the nodes of a job are alike (the denominator assumes so anyway), and turns
    /// would cost ranks × the measuring time at start-up for the same figure. The rate is FLOPs
    /// per second of the thread's own CPU time, so a process of someone else sharing the core
    /// (a busy workstation, an oversubscribed node) does not lower the ceiling; it lowers the
    /// job's tokens/s, and so its MFU, as it should.
    public static func measureFMAPeakPerCore(world: Communicator, seconds: Double = 0.1, repeats: Int = 3) throws -> Double {
        try world.barrier()
        var peak = [world.rank == 0 ? measureFMAPeakOfThisThread(seconds: seconds, repeats: repeats) : 0]
        try peak.withUnsafeMutableBufferPointer { buffer in
            let request = try world.broadcastNonBlocking(buffer, root: 0)
            while try !request.test() { usleep(1000) }
        }
        return peak[0]
    }

    /// The FMA loop's GFLOP per second of this thread's CPU time: the best of `repeats` runs of
    /// about `seconds`.
    static func measureFMAPeakOfThisThread(seconds: Double, repeats: Int) -> Double {
        let iterations = fmaIterations(lasting: seconds)
        var best = 0.0
        for _ in 0..<repeats {
            var sink: Float = 0
            let start = threadCPUSeconds()
            let flops = meshlm_fma_loop(iterations, &sink)
            best = max(best, flops / max(threadCPUSeconds() - start, 1e-9) / 1e9)
        }
        return best
    }

    /// Iterations of the FMA loop that take about `seconds` on one thread.
    private static func fmaIterations(lasting seconds: Double) -> Int64 {
        var sink: Float = 0
        var iterations: Int64 = 1 << 16
        while true {
            let start = monotonicSeconds()
            _ = meshlm_fma_loop(iterations, &sink)
            let elapsed = monotonicSeconds() - start
            if elapsed > seconds / 4 || iterations > 1 << 40 {
                return Int64(Double(iterations) * seconds / max(elapsed, 1e-6))
            }
            iterations *= 4
        }
    }

    /// CPU time the calling thread has used, in seconds.
    private static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// Logical CPUs this process may run on (its affinity mask, as Foundation reads it).
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }
}

import Foundation

/// A Double summed from several threads.
private final class Locked: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var value: Double
    init(_ value: Double) { self.value = value }
    func add(_ amount: Double) { lock.lock(); value += amount; lock.unlock() }
}
