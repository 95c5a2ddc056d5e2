import Foundation
import Parallel
import Runtime

/// The ranks that hold one tensor-parallel model for serving (Megatron's split, as training's
/// `TensorParallelLayout` lays it out): rank 0 runs the `Engine` (scheduler, sampler, HTTP) and
/// drives the others, which only compute their heads and MLP slice in `InferenceModel.follow`.
///
/// Communication per engine step (forward only; inference has no backward):
///
///     rank 0 → all   broadcast the command and the batch's sizes (6 Int32), then the batch
///                    flattened into one Int32 array (tokens, positions, sequence indices, logit
///                    rows, block tables)
///     all ↔ all      all-reduce (sum) of [rows, hidden] floats after the vocabulary-parallel
///                    embedding, and after o_proj and after down_proj of every layer
///     all → rank 0   gather of each rank's logits [logit rows, its vocabulary slice]
///
/// Block ids are rank 0's: every rank keeps a `KVBlockPool` of the same block count holding only
/// its KV heads, and writes the slots rank 0's block tables name.
///
/// A failed collective (a rank died) ends the whole job through `MPI_Abort` after printing which
/// rank failed, as `SPMDJob` does for a one-rank failure, so rank 0 never waits forever.
public final class InferenceTensorGroup {
    /// What rank 0 tells the followers at the start of each step.
    enum Command: Int32 {
        case forward = 1
        case stop = 2
    }

    public let communicator: Communicator
    public let layout: TensorParallelLayout
    /// Vocabulary entries each rank's head computes, in rank order.
    let vocabularyCounts: [Int]
    private var header = [Int32](repeating: 0, count: 6)

    /// - Precondition: `layout.degree == communicator.size` and `layout.rank == communicator.rank`.
    public init(communicator: Communicator, layout: TensorParallelLayout) {
        precondition(layout.degree == communicator.size && layout.rank == communicator.rank,
                     "the tensor-parallel layout does not match the communicator")
        self.communicator = communicator
        self.layout = layout
        vocabularyCounts = (0..<layout.degree).map {
            TensorParallelLayout.share(of: layout.globalConfig.vocabSize, degree: layout.degree, rank: $0).count
        }
    }

    public var isLeader: Bool { communicator.rank == 0 }

    // MARK: Rank 0 drives

    /// Sends the followers the batch of this step (rank 0 only).
    func send(_ batch: ForwardBatch) {
        precondition(isLeader, "only rank 0 sends batches")
        let blockEntries = batch.blockTables.reduce(0) { $0 + $1.count }
        header = [Command.forward.rawValue, Int32(batch.rowCount), Int32(batch.blockTables.count),
                  Int32(batch.logitRows.count), Int32(blockEntries), 0]
        broadcastHeader()
        var payload: [Int32] = []
        payload.reserveCapacity(3 * batch.rowCount + batch.logitRows.count + batch.blockTables.count + blockEntries)
        payload += batch.tokens
        payload += batch.positions
        payload += batch.sequenceIndices.map { Int32($0) }
        payload += batch.logitRows.map { Int32($0) }
        payload += batch.blockTables.map { Int32($0.count) }
        for table in batch.blockTables { payload += table.map { Int32($0) } }
        checked { () throws(MPIError) in try communicator.broadcast(&payload, root: 0) }
    }

    /// Ends the followers' `InferenceModel.follow` loops (rank 0 only): once the engine has
    /// drained, before the job finalizes MPI (or before the next engine, as `bench decode` does).
    public func stopFollowers() {
        precondition(isLeader, "only rank 0 stops the followers")
        header = [Command.stop.rawValue, 0, 0, 0, 0, 0]
        broadcastHeader()
    }

    // MARK: Followers

    /// The next batch from rank 0, or nil when rank 0 stopped the group.
    func receive() -> ForwardBatch? {
        precondition(!isLeader, "rank 0 sends batches")
        broadcastHeader()
        guard let command = Command(rawValue: header[0]) else {
            fail("rank 0 sent an unknown tensor-parallel serving command \(header[0]) (ranks run different MeshLM builds?)")
        }
        if command == .stop { return nil }
        let (rows, sequences, logits, blockEntries) = (Int(header[1]), Int(header[2]), Int(header[3]), Int(header[4]))
        var payload = [Int32](repeating: 0, count: 3 * rows + logits + sequences + blockEntries)
        checked { () throws(MPIError) in try communicator.broadcast(&payload, root: 0) }
        var batch = ForwardBatch()
        var cursor = 0
        func take(_ count: Int) -> ArraySlice<Int32> {
            defer { cursor += count }
            return payload[cursor..<cursor + count]
        }
        batch.tokens = Array(take(rows))
        batch.positions = Array(take(rows))
        batch.sequenceIndices = take(rows).map { Int($0) }
        batch.logitRows = take(logits).map { Int($0) }
        let lengths = take(sequences).map { Int($0) }
        batch.blockTables = lengths.map { length in take(length).map { Int($0) } }
        return batch
    }

    // MARK: Collectives of the forward

    /// Sums partial results across the ranks in place: [count] floats.
    func sum(_ values: UnsafeMutablePointer<Float>, count: Int) {
        checked { () throws(MPIError) in
            try communicator.allreduce(UnsafeMutableBufferPointer(start: values, count: count), .sum)
        }
    }

    /// Gathers each rank's logits ([rows, its vocabulary slice] in `local`) into `global`
    /// ([rows, vocab], rank 0 only), using `staging` ([rows × vocab]) for the rank-ordered blocks.
    func gatherLogits(local: UnsafePointer<Float>, rows: Int, into global: UnsafeMutablePointer<Float>,
                      staging: UnsafeMutablePointer<Float>) {
        let counts = vocabularyCounts.map { $0 * rows }
        let vocabulary = layout.globalConfig.vocabSize
        let receiveCount = isLeader ? rows * vocabulary : 0
        checked { () throws(MPIError) in
            try communicator.gather(UnsafeBufferPointer(start: local, count: counts[communicator.rank]),
                                    into: UnsafeMutableBufferPointer(start: staging, count: receiveCount),
                                    counts: counts, root: 0)
        }
        guard isLeader else { return }
        // Staging holds rank 0's [rows, V₀], then rank 1's [rows, V₁], …: interleave into rows.
        var blockStart = 0, column = 0
        for width in vocabularyCounts {
            for row in 0..<rows {
                (global + row * vocabulary + column).update(from: staging + blockStart + row * width, count: width)
            }
            blockStart += rows * width
            column += width
        }
    }

    private func broadcastHeader() {
        // Non-blocking, so an idle follower sleeps between polls instead of spinning in MPI
        // (a server may wait for requests for hours). Blocking and non-blocking collectives do
        // not match each other, so rank 0 uses the same call.
        checked { () throws(MPIError) in
            try header.withUnsafeMutableBufferPointer { (buffer) throws(MPIError) in
                let request = try communicator.broadcastNonBlocking(buffer, root: 0)
                let start = monotonicSeconds()
                while !(try request.test()) {
                    // Busy for the first 20 ms: decode steps follow each other within that.
                    if monotonicSeconds() - start > 0.02 { usleep(500) }
                }
            }
        }
    }

    private func checked(_ body: () throws(MPIError) -> Void) {
        do { try body() } catch { fail("tensor-parallel serving collective failed: \(error)") }
    }

    private func fail(_ message: String) -> Never {
        Log.write("meshlm: error (rank \(communicator.rank)): \(message)\n", to: .standardError)
        MPIEnvironment.abort(code: 1)
    }
}
