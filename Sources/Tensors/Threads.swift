import Dispatch

/// The threads one rank owns for its kernels, and the one way kernels use them.
///
/// MeshLM runs one rank per core by default (`count == 1`), and ranks × threads hybrids when a
/// node has more cores than ranks. Kernels receive the count as an argument (`threads:`), so no
/// kernel reads or changes global state to decide how parallel it is.
///
/// **OpenBLAS stays single-threaded.** The rank's threads belong to `KernelThreads`; OpenBLAS is
/// set to one thread once per process (`BLASLibrary.threadCount = 1`, done by the rank's start-up
/// code or `OPENBLAS_NUM_THREADS=1`) and never changed afterwards. A matrix product split over
/// the rank's threads is split by `BLAS.multiply` itself, each part a single-threaded sgemm.
/// This is what makes an sgemm inside a parallel region (attention's tile products) safe:
/// changing OpenBLAS's thread count is a process-wide write, so it cannot be done per call while
/// other threads run, and a multi-threaded OpenBLAS inside `count` workers would run
/// `count × OpenBLAS threads` threads on `count` cores (and its idle workers spin for a while
/// after each call, stealing the cores our workers need). `BLAS.multiply` checks the invariant
/// on every call (a precondition: debug builds optimize this module, which drops `assert`).
public struct KernelThreads: Sendable, Equatable, CustomStringConvertible {
    /// How many threads this rank owns (at least 1).
    public let count: Int

    /// One thread: every kernel runs inline on the caller's thread.
    public static let single = KernelThreads(count: 1)

    public init(count: Int = 1) {
        precondition(count >= 1, "a rank owns at least one thread, not \(count)")
        self.count = count
    }

    public var description: String { "KernelThreads(count: \(count))" }

    /// Splits `range` into at most `count` contiguous chunks of at least `minimumChunk` indices
    /// and runs `body` once per chunk, concurrently, returning when all have finished.
    ///
    /// Chunk `i` of `n` covers `range.lowerBound + i * range.count / n` up to the next such
    /// bound, so the partition depends only on the range and the chunk count. With one chunk the
    /// body runs inline on the caller's thread: no dispatch, no allocation. `body` must not write
    /// memory that another chunk reads or writes.
    public func parallelFor(
        _ range: Range<Int>, minimumChunk: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        let chunkCount = Swift.min(count, range.count / Swift.max(minimumChunk, 1))
        if chunkCount <= 1 {
            if !range.isEmpty { body(range) }
            return
        }
        let lower = range.lowerBound
        let total = range.count
        // concurrentPerform wants a @Sendable closure; the chunks are disjoint by contract, and
        // concurrentPerform returns only after every chunk ran, so `body` never outlives this call.
        withoutActuallyEscaping(body) { escapingBody in
            let chunkBody = UncheckedSendable(escapingBody)
            DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
                let start = lower + chunk * total / chunkCount
                let end = lower + (chunk + 1) * total / chunkCount
                chunkBody.value(start..<end)
            }
        }
    }
}

/// Carries a value into a `@Sendable` closure where the caller guarantees the sharing is safe.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
